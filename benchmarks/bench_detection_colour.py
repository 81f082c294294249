"""Detection on real colour photos (FDDB dev) beside CMU+MIT, and false positives on colour non-face photos.

One run measures, for dlib HOG (upsample 1) and the CNN cascade:

* **FDDB dev, test half** (odd-indexed images of ``fddb_dev/images``, see
  :mod:`faceswap_pipeline.train.colour_data`): AP at IoU 0.5, recall at 50 / 150 / 500 false
  positives and the recall where the ranked list stops, from each detector's full ranked list
  (HOG ``adjust_threshold`` -1; cascade 48-net threshold ``--curve-threshold-cascade``). Each
  detector's boxes are mapped to FDDB's (ellipse-derived) box convention by a centre/size
  transform **fitted on the FDDB train half** (even-indexed images; the same half the colour
  retrain may train on) and applied to the test half.
* **CMU+MIT** (the greyscale set of ``bench_detection.py``, 2-fold cross-fitted transform):
  recall at 10 / 50 / 100 FP, AP, where the list stops.
* **ms/image at 1 thread**: CPU (process) and wall time per FDDB test image, median, for the
  ranked-list settings and the pipeline's default operating points, the detectors' calls
  alternated image by image.
* **nonface_colour test half** (odd-indexed photos): false positives per 100 photos at the
  default operating points, before and after the verify stage (the second opinion), and the
  highest-scoring false positives (for inspection).
* **The second opinion on real faces**: the fraction of each detector's default-point true
  positives on the FDDB test half that the verify stage keeps, and its false positives there.

Usage::

    python benchmarks/bench_detection_colour.py --fddb ../shared/data/fddb_dev --cmu ../shared/data/cmu_mit_faces \\
        --nonface-colour ../shared/data/nonface_colour/images --threads 1 --json out.json --md out.md
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    apply_transform,
    cross_fit,
    evaluate,
    fit_transform,
    found_count,
    iou_matrix,
    load_set,
    match_pairs,
    write_json,
)

from faceswap_pipeline.train.colour_data import fddb_items, half_split, image_files, read_rgb

log = logging.getLogger("bench_detection_colour")
Dets = tuple[np.ndarray, np.ndarray]


def fit_refined(dets: list[Dets], gts: list[np.ndarray]) -> dict[str, float]:
    """Box transform detector -> annotation fitted on ``dets``/``gts``: fit, re-match at IoU 0.4 after mapping, re-fit."""
    t = fit_transform(match_pairs(dets, gts))
    mapped = [(apply_transform(b, t), s) for b, s in dets]
    keep = []
    for (b, _), (m, _), g in zip(dets, mapped, gts):
        iou = iou_matrix(g, m)
        for i in range(len(g)):
            if iou.shape[1] and iou[i].max() > 0.4:
                keep.append((b[int(iou[i].argmax())], g[i]))
    return fit_transform(keep) if len(keep) >= 3 else t


def boxes(det: Any, image: np.ndarray) -> Dets:
    d = det.detect(image)
    return np.array([x.box for x in d], dtype=np.float64).reshape(-1, 4), np.array([x.score for x in d], dtype=np.float64)


def timed(det: Any, image: np.ndarray) -> tuple[Dets, float, float]:
    t, c = time.perf_counter(), time.process_time()
    out = boxes(det, image)
    return out, (time.process_time() - c) * 1000, (time.perf_counter() - t) * 1000


def at_threshold(d: Dets, thr: float) -> Dets:
    b, s = d
    return b[s > thr], s[s > thr]


def match_flags(d: Dets, gt: np.ndarray, iou_thr: float = 0.5) -> np.ndarray:
    """Per detection (score order): True when it matches a not yet matched face at IoU >= iou_thr."""
    b, s = d
    order = np.argsort(-s)
    used = np.zeros(len(gt), bool)
    flags = np.zeros(len(b), bool)
    for k in order:
        if len(gt) == 0:
            break
        m = iou_matrix(b[k][None], gt)[0]
        m[used] = -1
        j = int(m.argmax())
        if m[j] >= iou_thr:
            used[j] = True
            flags[k] = True
    return flags


def stats(x: list[float]) -> dict[str, float]:
    a = np.asarray(x, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75]) if len(a) else (0, 0, 0)
    return {"median_ms": round(float(med), 2), "iqr_ms": round(float(q3 - q1), 2), "mean_ms": round(float(a.mean()) if len(a) else 0.0, 2), "n": int(len(a))}


def build_detectors(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from faceswap_pipeline.stages.detect_cascade import CascadeDetector
    from faceswap_pipeline.stages.detect_hog import HogDetector

    out: dict[str, dict[str, Any]] = {}
    if "hog" in a.detectors:
        out["hog"] = {"label": f"dlib HOG (upsample {a.hog_upsample})", "curve": HogDetector(upsample=a.hog_upsample, threshold=a.curve_threshold_hog),
                      "default": HogDetector(upsample=a.hog_upsample), "default_threshold": 0.0, "cache": True}
    if "cascade" in a.detectors:
        d = CascadeDetector.from_pretrained(weights_dir=a.weights_dir, min_face=a.min_face_default)
        t12, t24, t48 = d.thresholds
        ct = tuple(float(x) for x in a.curve_thresholds_cascade.split(",")) if a.curve_thresholds_cascade else (t12, t24, a.curve_threshold_cascade)
        curve = CascadeDetector.from_pretrained(weights_dir=a.weights_dir, min_face=a.min_face, thresholds=ct)
        out["cascade"] = {"label": f"cascade (min_face {a.min_face:g})", "curve": curve, "default": d, "default_threshold": t48, "cache": False,
                          "thresholds_default": [t12, t24, t48], "thresholds_curve": list(ct), "min_face_default": a.min_face_default}
    return out


def load_verifier(a: argparse.Namespace) -> Any:
    if a.no_verify:
        return None
    from faceswap_pipeline.stages.verify import FaceVerifier

    return FaceVerifier.from_pretrained(weights_dir=a.weights_dir)


def verify_keep(verifier: Any, image: np.ndarray, d: Dets) -> np.ndarray:
    """Which detections the verify stage keeps (all when there is none)."""
    if verifier is None or len(d[0]) == 0:
        return np.ones(len(d[0]), bool)
    from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord

    faces = [FaceRecord(detection=Detection(box=tuple(float(v) for v in b), score=float(s))) for b, s in zip(*d)]
    rec = ImageRecord(image=image, faces=list(faces))
    verifier([rec])
    kept_ids = {id(f) for f in rec.faces}
    return np.array([id(f) in kept_ids for f in faces], bool)


def run(a: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from faceswap_pipeline.machine import describe_machine

    torch.set_num_threads(a.threads)
    dets = build_detectors(a)
    verifier = load_verifier(a)
    cache_path = Path(a.hog_cache) if a.hog_cache else None
    cache: dict[str, Any] = pickle.loads(cache_path.read_bytes()) if cache_path and cache_path.is_file() else {}

    def curve_of(name: str, key: str, im: np.ndarray) -> Dets:
        spec = dets[name]
        if spec["cache"] and cache_path is not None:
            k = f"{name}|{a.hog_upsample}|{a.curve_threshold_hog}|{key}"
            if k not in cache:
                cache[k] = boxes(spec["curve"], im)
            return cache[k]
        return boxes(spec["curve"], im)

    res: dict[str, Any] = {"machine": describe_machine("cpu"), "threads": a.threads, "torch": torch.__version__, "detectors": {n: {"label": s["label"]} for n, s in dets.items()}}
    for n, s in dets.items():
        for k in ("thresholds_default", "thresholds_curve", "min_face_default"):
            if k in s:
                res["detectors"][n][k] = s[k]
    res["verifier"] = None if verifier is None else repr(verifier)
    for s in dets.values():  # one-off costs (weights, oneDNN kernels) before any timing
        s["default"].detect(np.zeros((64, 64, 3), np.uint8))
        s["curve"].detect(np.zeros((64, 64, 3), np.uint8))

    # ---------------- FDDB dev
    if a.fddb:
        train = fddb_items(a.fddb, "train")[: a.max_images or None]
        test = fddb_items(a.fddb, "test")[: a.max_images or None]
        log.info("FDDB: %d train-half images (transform fit), %d test-half images (%d faces)", len(train), len(test), sum(len(g) for _, g in test))
        fd: dict[str, Any] = {"test_images": len(test), "test_faces": int(sum(len(g) for _, g in test)), "fit_images": len(train), "detectors": {}}
        tr_dets: dict[str, list[Dets]] = {n: [] for n in dets}
        t0 = time.time()
        for p, _ in train:
            im = read_rgb(p)
            for n in dets:
                tr_dets[n].append(curve_of(n, f"fddb/{p.name}", im))
        log.info("FDDB train half done (%.0f s)", time.time() - t0)
        te_curve: dict[str, list[Dets]] = {n: [] for n in dets}
        te_default: dict[str, list[Dets]] = {n: [] for n in dets}
        times: dict[str, dict[str, list[float]]] = {n: {"curve_cpu": [], "curve_wall": [], "default_cpu": [], "default_wall": []} for n in dets}
        images_test = []
        for i, (p, _) in enumerate(test):
            im = read_rgb(p)
            images_test.append(im)
            for n, s in dets.items():
                # alternate detectors image by image; both settings timed on every image
                d, c, w = timed(s["curve"], im)
                if s["cache"] and cache_path is not None:
                    cache.setdefault(f"{n}|{a.hog_upsample}|{a.curve_threshold_hog}|fddb/{p.name}", d)
                te_curve[n].append(d)
                times[n]["curve_cpu"].append(c)
                times[n]["curve_wall"].append(w)
                d, c, w = timed(s["default"], im)
                te_default[n].append(d)
                times[n]["default_cpu"].append(c)
                times[n]["default_wall"].append(w)
            if i % 100 == 0:
                log.info("FDDB test %d/%d (%.0f s)", i, len(test), time.time() - t0)
        gts = [g for _, g in test]
        fd["operating_curve_train_half"] = {}
        for n in dets:
            tf = fit_refined(tr_dets[n], [g for _, g in train])
            # the operating point is chosen on the train half (never on the scored half)
            grid = CASCADE_GRID if n == "cascade" else HOG_GRID
            mapped_tr = [(apply_transform(b, tf), sc) for b, sc in tr_dets[n]]
            fd["operating_curve_train_half"][n] = operating_curve(mapped_tr, [g for _, g in train], grid)
            mapped = [(apply_transform(b, tf), sc) for b, sc in te_curve[n]]
            ev = evaluate(mapped, gts, fps=(50, 150, 500))
            mapped_def = [(apply_transform(b, tf), sc) for b, sc in te_default[n]]
            dv = evaluate(mapped_def, gts, fps=(50,))
            tp = int(round(dv["max_recall"] * dv["n_faces"]))
            ev["default_point"] = {"recall": dv["max_recall"], "detections": dv["n_detections"], "false_positives": dv["n_detections"] - tp, "ap50": dv["ap50"]}
            # the second opinion on the default-point detections: real faces kept, false positives left
            kept_tp = kept_fp = tp_all = fp_all = 0
            for im, d, g in zip(images_test, te_default[n], gts):
                flags = match_flags((apply_transform(d[0], tf), d[1]), g)
                keep = verify_keep(verifier, im, d)
                tp_all += int(flags.sum())
                fp_all += int((~flags).sum())
                kept_tp += int((flags & keep).sum())
                kept_fp += int((~flags & keep).sum())
            ev["verify"] = {"true_positives": tp_all, "kept": kept_tp, "kept_fraction": round(kept_tp / max(1, tp_all), 4),
                            "false_positives": fp_all, "false_positives_after": kept_fp}
            ev["annotation_transform"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in tf.items()}
            ev["ms_per_image"] = {k.replace("_", " "): stats(v) for k, v in times[n].items()}
            # framing-free ceiling: faces with any ranked-list detection centred inside, size 0.5-2.5x
            ev["found_centre_criterion"] = int(sum(found_count(b, g)[0] for (b, _), g in zip(te_curve[n], gts)))
            fd["detectors"][n] = ev
            log.info("FDDB %s: %s", n, json.dumps({k: v for k, v in ev.items() if k != "annotation_transform"}))
        if a.stage_recall and "cascade" in dets:
            fd["cascade_stage_ceiling"] = stage_ceiling(dets["cascade"]["curve"], images_test, gts)
            log.info("cascade stage ceiling: %s", fd["cascade_stage_ceiling"])
        res["fddb_test"] = fd

    # ---------------- CMU+MIT
    if a.cmu:
        items = load_set(Path(a.cmu))
        images = [im for _, im, _ in items]
        gts = [g for _, _, g in items]
        cm: dict[str, Any] = {"images": len(items), "faces": int(sum(len(g) for g in gts)), "detectors": {}}
        for n, s in dets.items():
            dd = [curve_of(n, f"cmu/{i}", im) for i, im in enumerate(images)] if n == "hog" else [boxes(s["curve"], im) for im in images]
            mapped, tf = cross_fit(dd, gts)
            ev = evaluate(mapped, gts, fps=(10, 50, 100))
            dv = evaluate([at_threshold(m, s["default_threshold"]) for m in mapped], gts, fps=(10,))
            tp = int(round(dv["max_recall"] * dv["n_faces"]))
            ev["default_point_same_min_face"] = {"recall": dv["max_recall"], "false_positives": dv["n_detections"] - tp}
            cm["detectors"][n] = ev
            log.info("CMU+MIT %s: %s", n, json.dumps(ev))
        res["cmu_mit"] = cm

    # ---------------- nonface_colour test half
    if a.nonface_colour:
        _, held = half_split(image_files(a.nonface_colour))
        nf: dict[str, Any] = {"photos": len(held), "split": "odd-indexed files of the sorted folder (the even half may be trained on)", "detectors": {}}
        for n, s in dets.items():
            before = after = 0
            worst = []
            for p in held:
                im = read_rgb(p)
                d = boxes(s["default"], im)
                keep = verify_keep(verifier, im, d)
                before += len(d[0])
                after += int(keep.sum())
                for b, sc, k in zip(d[0], d[1], keep):
                    worst.append({"photo": p.name, "box": [round(float(v), 1) for v in b], "score": round(float(sc), 4), "kept_by_verify": bool(k)})
            worst.sort(key=lambda r: -r["score"])
            nf["detectors"][n] = {"false_positives": before, "per_100_photos": round(100 * before / max(1, len(held)), 2),
                                  "false_positives_after_verify": after, "per_100_photos_after_verify": round(100 * after / max(1, len(held)), 2),
                                  "top": worst[:8]}
            log.info("nonface_colour %s: %d FP before verify, %d after (%d photos)", n, before, after, len(held))
        res["nonface_colour_test"] = nf

    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(cache))
        tmp.replace(cache_path)
    res["command"] = "python benchmarks/bench_detection_colour.py " + " ".join(argv)
    return res


CASCADE_GRID = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998)
HOG_GRID = (-0.5, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5)


def operating_curve(mapped: list[Dets], gts: list[np.ndarray], grid: tuple[float, ...]) -> list[dict[str, float]]:
    """Recall, false positives and F1 (IoU 0.5) of the ranked list cut at each score in ``grid``."""
    out = []
    n_img = max(1, len(mapped))
    for t in grid:
        ev = evaluate([at_threshold(m, t) for m in mapped], gts, fps=(50,))
        tp = int(round(ev["max_recall"] * ev["n_faces"]))
        fp = ev["n_detections"] - tp
        prec = tp / max(1, ev["n_detections"])
        f1 = 2 * prec * ev["max_recall"] / max(1e-9, prec + ev["max_recall"])
        out.append({"threshold": t, "recall": ev["max_recall"], "false_positives": fp, "fp_per_100_photos": round(100 * fp / n_img, 1), "f1": round(f1, 4)})
    return out


def stage_ceiling(curve: Any, images: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, Any]:
    """Faces (centre criterion, framing-free) that survive the 12-, 24- and 48-level of the ranked-list cascade."""
    from faceswap_pipeline.ops.framing import apply_framing
    from faceswap_pipeline.stages.detect_cascade import images_to_batch

    out = {}
    for st in (1, 2, 3):
        found = 0
        with torch.inference_mode():
            for im, g in zip(images, gts):
                b, sh = images_to_batch([im])
                c = curve.raw_detect(b, sh, stages=st)
                bx = apply_framing(c.boxes, curve.framing).float().numpy().astype(np.float64)
                found += found_count(bx, g)[0]
        out[f"after_{(12, 24, 48)[st - 1]}"] = found
    out["faces"] = int(sum(len(g) for g in gts))
    return out


def to_markdown(res: dict[str, Any]) -> str:
    L = ["## Colour photos: FDDB dev (test half) and nonface_colour, beside CMU+MIT", ""]
    L.append(f"Machine: {res['machine']}; torch {res['torch']}; {res['threads']} thread(s). Verify stage: `{res['verifier']}`.")
    L.append("")
    names = list(res["detectors"])
    lab = {n: res["detectors"][n]["label"] for n in names}
    if "fddb_test" in res:
        fd = res["fddb_test"]
        L.append(f"FDDB dev test half: {fd['test_images']} photos, {fd['test_faces']} faces; box transform to FDDB's convention fitted on the "
                 f"{fd['fit_images']} train-half photos. Ranked lists: HOG `adjust_threshold` -1; cascade thresholds {res['detectors'].get('cascade', {}).get('thresholds_curve')}.")
        L.append("")
        L.append("| detector | AP@0.5 | recall@50 FP | recall@150 FP | recall@500 FP | list stops at recall (detections) | default: recall / FP | CPU ms/image ranked list (median / mean) | CPU ms/image default |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for n in names:
            d = fd["detectors"][n]
            dp = d["default_point"]
            mc, md = d["ms_per_image"]["curve cpu"], d["ms_per_image"]["default cpu"]
            L.append(f"| {lab[n]} | {d['ap50']:.3f} | {d['recall@50fp']:.3f} | {d['recall@150fp']:.3f} | {d['recall@500fp']:.3f} | {d['max_recall']:.3f} ({d['n_detections']}) | "
                     f"{dp['recall']:.3f} / {dp['false_positives']} | {mc['median_ms']:.1f} / {mc['mean_ms']:.1f} | {md['median_ms']:.1f} / {md['mean_ms']:.1f} |")
        L.append("")
        L.append("Verify stage on the default-point detections of the FDDB test half:")
        L.append("")
        L.append("| detector | true positives | kept | false positives | left after verify |")
        L.append("|---|---|---|---|---|")
        for n in names:
            v = fd["detectors"][n]["verify"]
            L.append(f"| {lab[n]} | {v['true_positives']} | {v['kept']} ({100 * v['kept_fraction']:.1f} %) | {v['false_positives']} | {v['false_positives_after']} |")
        if fd.get("operating_curve_train_half"):
            L.append("")
            L.append("Operating curves on the FDDB **train half** (transform fitted there; where the default points are chosen): threshold: recall / FP per 100 photos / F1")
            L.append("")
            for n, rows in fd["operating_curve_train_half"].items():
                L.append(f"* {lab[n]}: " + "; ".join(f"{r['threshold']:g}: {r['recall']:.3f} / {r['fp_per_100_photos']:.1f} / {r['f1']:.3f}" for r in rows))
        if "cascade_stage_ceiling" in fd:
            c = fd["cascade_stage_ceiling"]
            L.append("")
            L.append(f"Cascade ranked list, faces still reachable (centre criterion) after the 12 / 24 / 48 level: {c['after_12']} / {c['after_24']} / {c['after_48']} of {c['faces']}.")
        L.append("")
    if "nonface_colour_test" in res:
        nf = res["nonface_colour_test"]
        L.append(f"nonface_colour test half ({nf['photos']} photos), default operating points: false positives (per 100 photos)")
        L.append("")
        L.append("| detector | before verify | after verify |")
        L.append("|---|---|---|")
        for n in names:
            d = nf["detectors"][n]
            L.append(f"| {lab[n]} | {d['false_positives']} ({d['per_100_photos']:.1f}) | {d['false_positives_after_verify']} ({d['per_100_photos_after_verify']:.1f}) |")
        L.append("")
    if "cmu_mit" in res:
        cm = res["cmu_mit"]
        L.append(f"CMU+MIT in the same run ({cm['images']} photos, {cm['faces']} faces, 2-fold cross-fitted transform):")
        L.append("")
        L.append("| detector | recall@10 FP | recall@50 FP | recall@100 FP | AP@0.5 | list stops at |")
        L.append("|---|---|---|---|---|---|")
        for n in names:
            d = cm["detectors"][n]
            L.append(f"| {lab[n]} | {d['recall@10fp']:.3f} | {d['recall@50fp']:.3f} | {d['recall@100fp']:.3f} | {d['ap50']:.3f} | {d['max_recall']:.3f} |")
        L.append("")
    L.append(f"Command: `{res['command']}`")
    L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fddb", default=None, help="FDDB dev folder (images/, annotations/)")
    p.add_argument("--cmu", default=None, help="CMU+MIT folder with boxes.txt")
    p.add_argument("--nonface-colour", default=None, help="folder of colour photos without faces")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--detectors", default="hog,cascade")
    p.add_argument("--hog-upsample", type=int, default=1)
    p.add_argument("--curve-threshold-hog", type=float, default=-1.0)
    p.add_argument("--min-face", type=float, default=20, help="cascade min_face of the ranked list")
    p.add_argument("--min-face-default", type=float, default=24, help="cascade min_face at the default operating point (the pipeline's)")
    p.add_argument("--curve-threshold-cascade", type=float, default=0.05, help="48-net threshold of the ranked list (12/24 as stored)")
    p.add_argument("--curve-thresholds-cascade", default=None, help="all three ranked-list thresholds t12,t24,t48 (overrides the above)")
    p.add_argument("--no-verify", action="store_true", help="no verify stage (the 'after verify' numbers equal the 'before')")
    p.add_argument("--stage-recall", action="store_true", help="also count the faces the cascade's ranked list still reaches after each level")
    p.add_argument("--max-images", type=int, default=0, help="use only the first N images of each FDDB half (smoke runs)")
    p.add_argument("--hog-cache", default=None, help="pickle caching HOG ranked lists (deterministic); timings are always measured")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    a = p.parse_args(argv)
    argv = list(argv) if argv is not None else sys.argv[1:]
    a.detectors = a.detectors.split(",")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    res = run(a, argv)
    write_json(res, a.json)
    if a.md:
        Path(a.md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.md).write_text(to_markdown(res))
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

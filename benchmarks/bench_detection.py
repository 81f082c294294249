"""Face detection benchmark: dlib HOG vs the CNN cascade, side by side, on CMU+MIT.

Measures, for each detector:

* **recall at fixed false-positive counts** (10, 50, 100 FPs over the whole set) and **AP at
  IoU >= 0.5** (VOC all-points), from all detections ranked by score;
* **ms/image** (median and IQR, ``--threads`` torch/dlib threads; HOG is single-threaded), on the
  CMU+MIT images and on a 450 x 350 photo (``skimage.data.astronaut`` resized);
* a **robustness slice**: faces found at each detector's *default operating point* on copies of
  the images rotated by +-15 and +-30 degrees and on copies downscaled by 2 (small faces).
  A face counts as found when a detection's centre lies inside its (rotated) box and the
  detection's side is within 0.5-2.5x the face's (framing-independent).
* batched throughput of the cascade on 640 x 480 images (``--throughput``; by default on cuda only).

**Box conventions.** HOG and the cascade (calibrated to HOG's framing) frame a face differently
from the CMU+MIT annotations. Each detector's boxes are mapped to the annotation convention by a
centre/size transform (``cx += ax w``, ``cy += ay h``, ``w *= sw``, ``h *= sh``) fitted by least
squares on matched pairs (IoU > 0.3) with **2-fold cross-fitting**: images sorted by path,
even-indexed ones form fold A, odd ones fold B; detections of fold A are mapped with the
transform fitted on fold B and vice versa, so no image is scored with a transform fitted on it.

Usage::

    python benchmarks/bench_detection.py --data ../shared/data/cmu_mit_faces --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import cross_fit, evaluate, found_count, load_set, write_json

log = logging.getLogger("bench_detection")


# ------------------------------------------------------------------------------------ data


# ------------------------------------------------------------------------------------ box transform


# ------------------------------------------------------------------------------------ metrics


def rotate_case(image: np.ndarray, gt: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Image rotated by ``angle`` degrees (counter-clockwise, canvas enlarged), boxes' centres rotated."""
    from skimage.transform import rotate

    h, w = image.shape[:2]
    out = rotate(image, angle, resize=True, preserve_range=True, order=1, mode="constant", cval=0).round().astype(np.uint8)
    H, W = out.shape[:2]
    a = np.deg2rad(angle)
    c = (gt[:, :2] + gt[:, 2:]) / 2 - np.array([w / 2, h / 2])
    # skimage rotates counter-clockwise in display coordinates (y down)
    rx = np.cos(a) * c[:, 0] + np.sin(a) * c[:, 1]
    ry = -np.sin(a) * c[:, 0] + np.cos(a) * c[:, 1]
    cc = np.c_[rx + W / 2, ry + H / 2]
    half = (gt[:, 2:] - gt[:, :2]) / 2
    return out, np.c_[cc - half, cc + half]


# ------------------------------------------------------------------------------------ detectors


class Runner:
    """A named detector with a 'curve' setting (low threshold, for AP) and a default setting."""

    def __init__(self, name: str, curve: Any, default: Any, default_min_score: float, cache_key: str | None = None) -> None:
        self.name, self.curve, self.default, self.default_min_score = name, curve, default, default_min_score
        self.cache_key = cache_key

    def boxes(self, det: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = det.detect(image)
        return (np.array([x.box for x in d], dtype=np.float64).reshape(-1, 4), np.array([x.score for x in d], dtype=np.float64))


def time_ms(fn: Any, images: list[np.ndarray], repeat: int = 1) -> dict[str, float]:
    """Wall-clock and process-CPU milliseconds per call: median and IQR.

    CPU time (``time.process_time``) is reported too because this machine is shared: with one
    thread, CPU time is close to what the call costs on an idle core, while wall time includes
    waiting for the core.
    """
    ts, cs = [], []
    for _ in range(repeat):
        for im in images:
            t, c = time.perf_counter(), time.process_time()
            fn(im)
            cs.append((time.process_time() - c) * 1000)
            ts.append((time.perf_counter() - t) * 1000)
    q1, med, q3 = np.percentile(ts, [25, 50, 75])
    c1, cmed, c3 = np.percentile(cs, [25, 50, 75])
    return {"median_ms": round(float(med), 2), "iqr_ms": round(float(q3 - q1), 2), "cpu_median_ms": round(float(cmed), 2), "cpu_iqr_ms": round(float(c3 - c1), 2), "n": len(ts)}


def time_interleaved(fns: dict[str, Any], image: np.ndarray, repeat: int) -> dict[str, dict[str, float]]:
    """:func:`time_ms` of several detectors on one image, alternating calls so load changes hit all alike."""
    raw: dict[str, list[dict[str, float]]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            raw[k].append(time_ms(f, [image], 1))
    out = {}
    for k, rs in raw.items():
        w = [r["median_ms"] for r in rs]
        c = [r["cpu_median_ms"] for r in rs]
        out[k] = {"median_ms": round(float(np.median(w)), 2), "iqr_ms": round(float(np.subtract(*np.percentile(w, [75, 25]))), 2),
                  "cpu_median_ms": round(float(np.median(c)), 2), "cpu_iqr_ms": round(float(np.subtract(*np.percentile(c, [75, 25]))), 2), "n": len(rs)}
    return out


def to_markdown(res: dict[str, Any], argv: list[str] | None) -> str:
    """The benchmark as a Markdown section (tables of the measured numbers)."""
    names = list(res["detectors"])
    L = ["## Face detection: dlib HOG vs CNN cascade (CMU+MIT)", ""]
    L.append(f"Machine: {res['machine']}; torch {res['torch']}. "
             f"Set: {res['set']['images']} images, {res['set']['faces']} faces (CMU+MIT frontal test set, greyscale).")
    if res.get("cascade_precision"):
        L.append("")
        L.append(f"Cascade 24/48-level nets run in {res['cascade_precision']['window_nets']} (precision `{res['cascade_precision']['requested']}`); the 12-net scan in float32.")
    L.append("")
    L.append("Boxes are mapped to the annotation convention by a centre/size transform per detector, "
             "2-fold cross-fitted (fit on the even-indexed images, score the odd ones, and vice versa). "
             "Recall at N false positives and AP at IoU >= 0.5 use each detector's full ranked list "
             "(HOG `adjust_threshold` -1, cascade 48-net threshold 0.05).")
    L.append("")
    L.append("| detector | recall@10 FP | recall@50 FP | recall@100 FP | AP@0.5 | recall / FP at default | wall ms/image CMU+MIT (median, IQR) | CPU ms/image |")
    L.append("|---|---|---|---|---|---|---|---|")
    for n in names:
        d = res["detectors"][n]
        t = d["timing_cmu_mit"]
        dp = d["default_point"]
        L.append(f"| {n} | {d['recall@10fp']:.3f} | {d['recall@50fp']:.3f} | {d['recall@100fp']:.3f} | {d['ap50']:.3f} | "
                 f"{dp['recall']:.3f} / {dp['false_positives']} | {t['median_ms']:.1f} ({t['iqr_ms']:.1f}) | {t['cpu_median_ms']:.1f} ({t['cpu_iqr_ms']:.1f}) |")
    L.append("")
    sp = res["speed_450x350"]
    L.append(f"Speed on a 450x350 photo ({sp['image']}), ms/image, median (IQR):")
    L.append("")
    L.append("| detector | wall ms/image | CPU ms/image |")
    L.append("|---|---|---|")
    for k, v in sp.items():
        if isinstance(v, dict):
            L.append(f"| {k} | {v['median_ms']:.1f} ({v['iqr_ms']:.1f}) | {v['cpu_median_ms']:.1f} ({v['cpu_iqr_ms']:.1f}) |")
    if "throughput_vga" in res:
        tv = res["throughput_vga"]
        L.append("")
        L.append(f"Batched throughput, 640x480 photos, cascade min_face 24 on {tv['device']} ({tv['threads']} thread(s), "
                 f"{tv['window_nets']} 24/48 nets): " + ", ".join(f"batch {bs}: {v} images/s" for bs, v in tv["images_per_s"].items()))
    if "robustness" in res:
        L.append("")
        L.append("Robustness slice: faces found at each detector's default operating point "
                 "(centre of a detection inside the face box, size within 0.5-2.5x); in brackets the "
                 "detections matching no face.")
        L.append("")
        L.append("| case | faces | " + " | ".join(names) + " |")
        L.append("|---|---|" + "---|" * len(names))
        for c, row in res["robustness"].items():
            L.append(f"| {c} | {row['faces']} | " + " | ".join(f"{row[n]['found']} ({row[n]['unmatched_detections']})" for n in names) + " |")
    L.append("")
    L.append("Command: `python benchmarks/bench_detection.py " + " ".join(argv or []) + "`")
    L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="CMU+MIT folder with boxes.txt")
    p.add_argument("--device", default="cpu", help="cascade device (cpu or cuda)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--min-face", type=float, default=20, help="cascade minimum face size for the accuracy runs")
    p.add_argument("--hog-upsample", type=int, default=1)
    p.add_argument("--curve-threshold-hog", type=float, default=-1.0, help="dlib adjust_threshold for the AP curve")
    p.add_argument("--curve-threshold-cascade", type=float, default=0.05, help="48-net threshold for the AP curve")
    p.add_argument("--timing-repeat", type=int, default=10)
    p.add_argument("--no-robustness", action="store_true")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="cascade 24/48-level arithmetic (CascadeDetector precision)")
    p.add_argument("--detectors", default="hog,cascade", help="comma-separated subset of hog,cascade")
    p.add_argument("--hog-cache", default=None, help="pickle file caching HOG detections (HOG is deterministic; timings are always measured)")
    p.add_argument("--throughput", default=None, help="comma-separated batch sizes for the batched VGA throughput run (default: 16,64,128 on cuda, none on cpu)")
    p.add_argument("--throughput-seconds", type=float, default=5.0, help="timed seconds per batch size")
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument("--md", default=None, help="also write a Markdown section (tables) here")
    a = p.parse_args(argv)
    argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)

    from skimage import data as skdata
    from skimage.transform import resize

    from faceswap_pipeline.stages.detect_cascade import CascadeDetector
    from faceswap_pipeline.stages.detect_hog import HogDetector

    items = load_set(Path(a.data))
    images = [im for _, im, _ in items]
    gts = [g for _, _, g in items]
    log.info("%d images, %d faces", len(items), sum(len(g) for g in gts))

    use_cascade = "cascade" in a.detectors.split(",")
    t12 = t24 = t48 = float("nan")
    casc_default = casc_curve = None
    if use_cascade:
        casc_default = CascadeDetector.from_pretrained(device=a.device, weights_dir=a.weights_dir, min_face=a.min_face, precision=a.precision)
        t12, t24, t48 = casc_default.thresholds
        casc_curve = CascadeDetector.from_pretrained(
            device=a.device, weights_dir=a.weights_dir, min_face=a.min_face, thresholds=(t12, t24, a.curve_threshold_cascade), precision=a.precision
        )
    hog_default = HogDetector(upsample=a.hog_upsample)
    hog_curve = HogDetector(upsample=a.hog_upsample, threshold=a.curve_threshold_hog)
    runners = [Runner(f"dlib HOG (upsample {a.hog_upsample})", hog_curve, hog_default, 0.0, cache_key="hog")]
    if use_cascade:
        runners.append(Runner(f"cascade (min_face {a.min_face:g})", casc_curve, casc_default, t48))
    cache: dict[str, Any] = {}
    cache_path = Path(a.hog_cache) if a.hog_cache else None
    if cache_path is not None and cache_path.is_file():
        import pickle

        cache = pickle.loads(cache_path.read_bytes())
        log.info("HOG detections from cache %s (%d entries)", cache_path, len(cache))

    def boxes_of(r: Runner, which: str, key: str, im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if r.cache_key is None or cache_path is None:
            return r.boxes(r.curve if which == "curve" else r.default, im)
        k = f"{r.cache_key}|{a.hog_upsample}|{a.curve_threshold_hog}|{which}|{key}"
        if k not in cache:
            cache[k] = r.boxes(r.curve if which == "curve" else r.default, im)
        return cache[k]

    from faceswap_pipeline.machine import describe_machine

    res: dict[str, Any] = {
        "machine": describe_machine(a.device),
        "threads": a.threads,
        "torch": torch.__version__,
        "set": {"images": len(items), "faces": int(sum(len(g) for g in gts))},
        "cascade_thresholds": [t12, t24, t48],
        "cascade_framing": casc_default.framing if casc_default is not None else None,
        "cascade_precision": {"requested": a.precision, "window_nets": str(casc_default.window_dtype).replace("torch.", "")} if casc_default is not None else None,
        "detectors": {},
    }
    for r in runners:
        t0 = time.time()
        dets = [boxes_of(r, "curve", f"orig/{i}", im) for i, im in enumerate(images)]
        log.info("%s: curve run %.1f s", r.name, time.time() - t0)
        mapped, tf = cross_fit(dets, gts)
        ev = evaluate(mapped, gts)
        default_dets = [(b[s > r.default_min_score], s[s > r.default_min_score]) if len(s) else (b, s) for b, s in mapped]
        dv = evaluate(default_dets, gts)
        ev["default_point"] = {"recall": dv["max_recall"], "detections": dv["n_detections"], "false_positives": int(dv["n_detections"] - round(dv["max_recall"] * dv["n_faces"]))}
        ev["annotation_transform"] = tf
        ev["timing_cmu_mit"] = time_ms(r.default.detect, images, 1)
        res["detectors"][r.name] = ev
        log.info("%s: %s", r.name, json.dumps({k: v for k, v in ev.items() if k != "annotation_transform"}))

    # ---- speed on a 450 x 350 photo, 1 thread
    photo = (resize(skdata.astronaut(), (350, 450), anti_aliasing=True, preserve_range=True)).round().astype(np.uint8)
    speed: dict[str, Any] = {"image": "skimage astronaut resized to 450x350"}
    fns: dict[str, Any] = {f"hog_upsample{a.hog_upsample}": hog_default.detect}
    for mf in (20, 24, 40) if use_cascade else ():
        d = CascadeDetector.from_pretrained(device=a.device, weights_dir=a.weights_dir, min_face=mf, precision=a.precision)
        d.detect(photo)  # warm-up
        fns[f"cascade_min_face{mf}"] = d.detect
    if use_cascade and a.device == "cpu":  # the default operating point in the other precision, for comparison
        other = "fp32" if casc_default is not None and casc_default.window_dtype == torch.bfloat16 else "bf16"
        d = CascadeDetector.from_pretrained(device=a.device, weights_dir=a.weights_dir, min_face=24, precision=other)
        d.detect(photo)
        fns[f"cascade_min_face24_{other}"] = d.detect
    if use_cascade:
        d = CascadeDetector.from_pretrained(device=a.device, weights_dir=a.weights_dir, mode="sliding")
        d.detect(photo)
        fns["sliding_seed001"] = d.detect
    speed.update(time_interleaved(fns, photo, a.timing_repeat))
    res["speed_450x350"] = speed
    log.info("speed: %s", speed)

    # ---- robustness slice (default operating points)
    if not a.no_robustness:
        rob: dict[str, Any] = {}
        cases: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"original": list(zip(images, gts))}
        for ang in (-30, -15, 15, 30):
            cases[f"rotated {ang:+d} deg"] = [rotate_case(im, g, ang) for im, g in zip(images, gts)]
        cases["downscaled x0.5"] = [
            ((resize(im, (im.shape[0] // 2, im.shape[1] // 2), anti_aliasing=True, preserve_range=True)).round().astype(np.uint8), g / 2) for im, g in zip(images, gts)
        ]
        for cname, cs in cases.items():
            row = {"faces": int(sum(len(g) for _, g in cs))}
            for r in runners:
                found = fp = 0
                for i, (im, g) in enumerate(cs):
                    b, _ = boxes_of(r, "default", f"{cname}/{i}", im)
                    f1, f2 = found_count(b, g)
                    found += f1
                    fp += f2
                row[r.name] = {"found": found, "unmatched_detections": fp}
            rob[cname] = row
            log.info("robustness %s: %s", cname, row)
        res["robustness"] = rob

    # ---- batched throughput on VGA photos (the H100 target: >= 1000 images/s)
    sizes = [int(x) for x in a.throughput.split(",") if x.strip()] if a.throughput else ([16, 64, 128] if a.device.startswith("cuda") else [])
    if sizes and use_cascade:
        vga = (resize(skdata.astronaut(), (480, 640), anti_aliasing=True, preserve_range=True)).round().astype(np.uint8)
        det = CascadeDetector.from_pretrained(device=a.device, weights_dir=a.weights_dir, min_face=24, precision=a.precision)

        def sync() -> None:
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()

        thr: dict[str, Any] = {"device": a.device, "threads": a.threads, "image": "skimage astronaut resized to 640x480", "min_face": 24,
                               "window_nets": str(det.window_dtype).replace("torch.", ""), "seconds_per_batch_size": a.throughput_seconds,
                               "images_per_s": {}}
        for bs in sizes:
            batch = [vga] * bs
            found = det.detect_batch(batch)
            assert all(len(f) == len(found[0]) for f in found), "batched detection differs between identical images"
            sync()
            t = time.perf_counter()
            n = 0
            while time.perf_counter() - t < a.throughput_seconds:
                det.detect_batch(batch)
                n += bs
            sync()
            thr["images_per_s"][str(bs)] = round(n / (time.perf_counter() - t), 1)
        res["throughput_vga"] = thr
        log.info("throughput: %s", thr)

    if cache_path is not None:
        import pickle

        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(pickle.dumps(cache))
    if a.md:
        Path(a.md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.md).write_text(to_markdown(res, argv))
    print(write_json(res, a.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

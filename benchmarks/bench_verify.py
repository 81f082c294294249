"""What the face verifier (cascade 48-net second opinion on HOG detections) keeps and drops.

* Held-out UTKFace faces (validation split, never used to train the cascade), in colour and
  converted to greyscale: the fraction of HOG's top detection the verifier keeps per threshold.
  The shipped threshold is chosen here.
* CMU+MIT (``boxes.txt``, the detection test set): faces found / unmatched detections at HOG's
  default threshold, without and with the verifier, per threshold (reported, not tuned on).
* Cost: ms per verified face (1 thread).

``--register`` records the chosen threshold (the highest candidate that keeps every colour face)
with the cascade weights (manifest entry ``cascade.12net``, ``cascade`` -> ``verify_threshold``),
where :func:`faceswap_pipeline.stages.verify.stored_threshold` reads it: run it after retraining
the cascade.

    python benchmarks/bench_verify.py --utk ../shared/data/utkface/train --cmu ../shared/data/cmu_mit_faces \\
        --json benchmarks/results/verify.json --md docs/benchmarks/verify.md
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import found_count, load_set

from faceswap_pipeline.machine import describe_machine
from faceswap_pipeline.stages.detect_hog import HogDetector
from faceswap_pipeline.stages.verify import FaceVerifier, stored_threshold

THRESHOLDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)


def grey(im: np.ndarray) -> np.ndarray:
    g = (im[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().clip(0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def utk_keep_rates(folder: Path, n: int, hog: HogDetector, ver: FaceVerifier, seed: int = 1) -> dict:
    import imageio.v3 as iio

    from faceswap_pipeline.train.splits import is_validation

    files = [f for f in sorted(folder.glob("*.jpg")) if is_validation(f.name)]
    random.Random(seed).shuffle(files)
    probs: dict[str, list[float]] = {"colour": [], "grey": []}
    for f in files[:n]:
        im = np.asarray(iio.imread(f))[..., :3]
        for kind, x in (("colour", im), ("grey", grey(im))):
            dets = hog.detect(x)
            if dets:
                probs[kind].append(float(ver.face_probs(x, [dets[0].box])[0]))
    out = {}
    for kind, p in probs.items():
        a = np.array(p)
        out[kind] = {"faces": len(a), "kept": {str(t): int((a >= t).sum()) for t in THRESHOLDS}}
    return out


def choose_threshold(utk: dict) -> float:
    """The highest candidate threshold that keeps every colour face (the documented rule)."""
    c = utk["colour"]
    ok = [t for t in THRESHOLDS if c["kept"][str(t)] == c["faces"]]
    if not ok:
        raise SystemExit(f"no candidate threshold {THRESHOLDS} keeps all {c['faces']} colour faces: {c['kept']}")
    return max(ok)


def register_threshold(t: float, utk: dict, command: str, weights_dir: str | None) -> None:
    """Write ``t`` into the manifest entry ``cascade.12net`` (field ``cascade``) where it lives."""
    from faceswap_pipeline.weights import locate, register_weights

    folder, entry = locate("cascade.12net", weights_dir)
    entry = json.loads(json.dumps(entry))
    entry.setdefault("cascade", {})["verify_threshold"] = t
    entry["cascade"]["verify_threshold_fit"] = {
        "rule": "highest candidate threshold keeping every held-out colour UTKFace face (HOG's top detection per validation-split photo)",
        "kept": {k: {"faces": v["faces"], "kept": v["kept"][str(t)]} for k, v in utk.items()},
        "command": command,
    }
    register_weights("cascade.12net", entry, folder)
    print(f"recorded verify_threshold {t} in {folder / 'manifest.json'}", file=sys.stderr)


def cmu_counts(folder: Path, hog: HogDetector, ver: FaceVerifier) -> dict:
    data = load_set(folder)
    tot = {str(t): [0, 0] for t in (0.0, *THRESHOLDS)}
    times = []
    for _, im, gt in data:
        dets = hog.detect(im)
        boxes = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
        t0 = time.perf_counter()
        p = ver.face_probs(im, [d.box for d in dets])
        if len(dets):
            times.append((time.perf_counter() - t0) * 1000 / len(dets))
        for key in tot:
            keep = p >= float(key)
            found, fp = found_count(boxes[keep], gt)
            tot[key][0] += found
            tot[key][1] += fp
    return {"images": len(data), "faces": int(sum(len(g) for _, _, g in data)),
            "found_fp": {k: {"found": v[0], "unmatched": v[1]} for k, v in tot.items()},
            "ms_per_face_median": round(float(np.median(times)), 2) if times else None}


def to_markdown(res: dict) -> str:
    lines = ["## Face verification of HOG detections (cascade 48-net second opinion)", "",
             f"Machine: {res['machine']}. Shipped threshold: {res['shipped_threshold']}.", ""]
    if "utk" in res:
        u = res["utk"]
        lines += ["Held-out UTKFace validation photos (HOG's top detection per photo; never used to train the cascade): "
                  "faces kept per threshold.", "",
                  "| threshold | " + " | ".join(THRESHOLDS_STR) + " |", "|---|" + "---|" * len(THRESHOLDS_STR)]
        for kind in ("colour", "grey"):
            lines.append(f"| {kind} ({u[kind]['faces']} faces) | " + " | ".join(str(u[kind]["kept"][t]) for t in THRESHOLDS_STR) + " |")
        lines.append("")
    if "cmu" in res:
        c = res["cmu"]
        lines += [f"CMU+MIT ({c['images']} images, {c['faces']} faces), HOG at its default threshold 0: faces found "
                  "(unmatched detections), same centre criterion as the robustness slice of the detection benchmark.", "",
                  "| verifier | " + " | ".join(["off", *THRESHOLDS_STR]) + " |", "|---|" + "---|" * (1 + len(THRESHOLDS_STR)),
                  "| found (unmatched) | " + " | ".join(f"{c['found_fp'][k]['found']} ({c['found_fp'][k]['unmatched']})"
                                                    for k in ["0.0", *THRESHOLDS_STR]) + " |", "",
                  f"Cost: {c['ms_per_face_median']} ms per verified face (median over CMU+MIT images).", ""]
    lines += ["How the threshold was chosen: on the UTKFace rows only (held-out validation faces), as the highest "
              "candidate threshold that keeps every colour face, then recorded with the cascade weights (`--register`: "
              "manifest entry `cascade.12net`, `cascade` -> `verify_threshold`); CMU+MIT is reported, not tuned on. "
              "The non-face photo set is not used here: the cascade mined its negatives from it.", ""]
    lines.append(f"Command: `{res['command']}`")
    return "\n".join(lines) + "\n"


THRESHOLDS_STR = [str(t) for t in THRESHOLDS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utk", type=Path, help="UTKFace folder (its validation split is used)")
    ap.add_argument("--n-utk", type=int, default=800)
    ap.add_argument("--cmu", type=Path, help="CMU+MIT folder with boxes.txt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--from-json", type=Path, help="only rewrite --md from an earlier --json result")
    ap.add_argument("--weights-dir", default=None, help="cascade weights to score with (default: the shipped ones)")
    ap.add_argument("--register", action="store_true", help="record the chosen threshold in the manifest beside the cascade weights (needs --utk)")
    a = ap.parse_args(argv)
    if a.from_json:
        if a.md:
            a.md.write_text(to_markdown(json.loads(a.from_json.read_text())))
        return 0
    torch.set_num_threads(a.threads)
    hog = HogDetector()
    if a.register and not a.utk:
        ap.error("--register needs --utk (the threshold is chosen on held-out UTKFace faces)")
    ver = FaceVerifier.from_pretrained(threshold=0.0, device="cpu", weights_dir=a.weights_dir)
    res: dict = {"machine": describe_machine(), "shipped_threshold": stored_threshold(a.weights_dir),
                 "command": "python benchmarks/bench_verify.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if a.utk:
        res["utk"] = utk_keep_rates(a.utk, a.n_utk, hog, ver)
        res["chosen_threshold"] = choose_threshold(res["utk"])
        if a.register:
            register_threshold(res["chosen_threshold"], res["utk"], res["command"], a.weights_dir)
            res["shipped_threshold"] = stored_threshold(a.weights_dir)
    if a.cmu:
        res["cmu"] = cmu_counts(a.cmu, hog, ver)
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    if a.md:
        a.md.write_text(to_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

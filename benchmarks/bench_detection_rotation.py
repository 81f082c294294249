"""In-plane rotation on held-out UTKFace: faces found by dlib HOG and cascade weight sets, per angle.

The development benchmark for rotation (CMU+MIT is the test set, reported by
``bench_detection.py``; nothing is chosen on it). Faces are UTKFace chips of the project's
**validation** split (never used to train or tune the cascade), each pasted with its face window
scaled to a random side in ``--face-px`` (log-uniform) at a random offset on a held-out non-face
photo (every 10th sorted file, the ones the cascade's training holds out); every other composite
is converted to greyscale (CMU+MIT and many old photos are grey). Each chip is pasted once per
angle in ``--angles`` with the same background, size and offset, so the angle is the only thing
that changes. A face counts as found when a detection's centre lies inside the face window and
its side is within 0.5-2.5x the window's (the CMU+MIT robustness criterion), at each detector's
default operating point; detections matching no face are counted too. False positives are also
counted on the 150 held-out non-face photos themselves.

Usage::

    python benchmarks/bench_detection_rotation.py --utk ../shared/data/utkface/train \\
        --nonface ../shared/data/nonface/images --threads 1 --json out.json --md out.md \\
        --cascade shipped= --cascade new=runs/cascade_v3/weights
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
from common import found_count, load_cascades, validation_chips, write_json

log = logging.getLogger("bench_detection_rotation")

_LUMA = np.array([0.299, 0.587, 0.114])


def _boxes(dets: list[Any]) -> np.ndarray:
    return np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--utk", required=True, help="UTKFace chips folder (validation-split chips are used)")
    p.add_argument("--nonface", required=True, help="non-face photos (the held-out every-10th files are used)")
    p.add_argument("--cascade", action="append", default=[], help="NAME=WEIGHTS_DIR (empty dir: shipped weights); repeatable")
    p.add_argument("--n", type=int, default=600, help="validation chips used (0: all)")
    p.add_argument("--angles", default="-30,-15,0,15,30", help="comma-separated in-plane rotations (degrees)")
    p.add_argument("--face-px", default="40,110", help="face window side range (pixels, log-uniform)")
    p.add_argument("--canvas", type=int, default=260)
    p.add_argument("--min-face", type=float, default=24, help="cascade min_face")
    p.add_argument("--hog-upsample", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    from faceswap_pipeline.stages.detect_hog import HogDetector
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig
    from faceswap_pipeline.train.cascade_data import composite, nonface_files, to_tensor
    from faceswap_pipeline.train.colour_data import read_rgb

    angles = [float(x) for x in a.angles.split(",")]
    lo, hi = (float(x) for x in a.face_px.split(","))
    files = validation_chips(a.utk, a.n, a.seed)
    _, held = nonface_files(a.nonface)
    held_imgs = [read_rgb(f) for f in held]
    bgs = [to_tensor(im) for im in held_imgs]
    detectors: dict[str, Any] = {f"dlib HOG (upsample {a.hog_upsample})": HogDetector(upsample=a.hog_upsample)}
    detectors.update({f"cascade {name}": det for name, det in load_cascades(a.cascade, a.min_face).items()})
    window = CascadeTrainConfig().window
    rng = np.random.default_rng(a.seed)
    rows = {f"{ang:+g}": {"faces": 0, **{n: {"found": 0, "unmatched": 0} for n in detectors}} for ang in angles}
    t0 = time.time()
    for i, f in enumerate(files):
        chip = to_tensor(read_rgb(f))
        bg = bgs[int(rng.integers(len(bgs)))]
        face_px = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        room = max(0.0, (a.canvas - face_px * 1.5) / 2)
        off = (float(rng.uniform(-room, room)), float(rng.uniform(-room, room)))
        grey = i % 2 == 1
        for ang in angles:
            crng = np.random.default_rng([a.seed, i])  # same background crop for every angle
            canvas, fb = composite(chip, bg, tuple(window), face_px, a.canvas, ang, off, crng)  # type: ignore[arg-type]
            img = (canvas.permute(1, 2, 0) * 255).round().byte().numpy()
            if grey:
                img = np.repeat((img @ _LUMA).round().clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            gt = fb.numpy()[None].astype(np.float64)
            row = rows[f"{ang:+g}"]
            row["faces"] += 1
            for n, det in detectors.items():
                found, unmatched = found_count(_boxes(det.detect(img)), gt)
                row[n]["found"] += found
                row[n]["unmatched"] += unmatched
        if i % 100 == 0:
            log.info("%d/%d (%.0f s) %s", i, len(files), time.time() - t0, json.dumps(rows))
    nonface = {n: int(sum(len(det.detect(im)) for im in held_imgs)) for n, det in detectors.items()}
    res: dict[str, Any] = {
        "faces_per_angle": len(files),
        "face_px": [lo, hi],
        "canvas": a.canvas,
        "min_face": a.min_face,
        "greyscale": "every other composite",
        "angles": rows,
        "nonface_photos": len(held_imgs),
        "nonface_false_positives": nonface,
        "seconds": round(time.time() - t0, 1),
    }
    txt = write_json(res, a.json)
    if a.md:
        names = list(detectors)
        L = ["| angle | faces | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for k, r in rows.items():
            L.append(f"| {k} deg | {r['faces']} | " + " | ".join(f"{r[n]['found']} ({r[n]['unmatched']})" for n in names) + " |")
        L.append(f"| false positives on {len(held_imgs)} non-face photos | | " + " | ".join(str(nonface[n]) for n in names) + " |")
        Path(a.md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.md).write_text("\n".join(L) + "\n")
    print(txt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Detection fairness: how often each detector finds the face, per UTKFace race group.

On the held-out UTKFace validation photos (200x200, one face each; the project's split,
:func:`~faceswap_pipeline.train.splits.is_validation`), adults 18-70, this counts the photos in
which a detector (with its verifier, as the pipeline runs it) returns a face overlapping the
photo's centre, per race, for: dlib HOG, the cascade, and HOG with the cascade as a second pass on
photos where HOG found nothing (``load_pipeline(..., fallback="cascade")``). All three run in one
process on the same photos, 1 thread.

    python benchmarks/bench_detection_fairness.py --json benchmarks/results/detection_fairness.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from faceswap_pipeline.labels import RACES

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface" / "train"


def _hit(dets, hw: tuple[int, int]) -> bool:
    cy, cx = hw[0] / 2, hw[1] / 2
    return any(d.box[0] <= cx <= d.box[2] and d.box[1] <= cy <= d.box[3] for d in dets)


def main(argv: list[str] | None = None) -> int:
    from faceswap_pipeline.api import load_detector
    from faceswap_pipeline.io import read_image
    from faceswap_pipeline.machine import cpu_name
    from faceswap_pipeline.train.splits import is_validation, parse_utk_name

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--per-group", type=int, default=400, help="photos per race group (0 = all)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    files: dict[int, list[Path]] = {r: [] for r in range(len(RACES))}
    for f in sorted(Path(a.data).iterdir()):
        lab = parse_utk_name(f.name)
        if lab is not None and is_validation(f.name) and 18 <= lab.age <= 70:
            files[lab.race].append(f)
    dets = {"hog": load_detector("hog", "cpu"), "cascade": load_detector("cascade", "cpu")}
    res: dict[str, dict[str, dict[str, float]]] = {k: {} for k in ("hog", "cascade", "hog+cascade")}
    secs = {k: 0.0 for k in res}
    for r, fs in files.items():
        fs = fs[: a.per_group] if a.per_group else fs
        hits = {k: 0 for k in res}
        for f in fs:
            im = read_image(f).rgb
            found, n = {}, {}
            for k, det in dets.items():
                t = time.process_time()
                d = det(im)
                secs[k] += time.process_time() - t
                found[k], n[k] = _hit(d, im.shape[:2]), len(d)
            hits["hog"] += found["hog"]
            hits["cascade"] += found["cascade"]
            hits["hog+cascade"] += found["hog"] if n["hog"] else found["cascade"]  # the second pass runs where HOG found nothing
        for k in res:
            res[k][RACES[r]] = {"n": len(fs), "found": round(hits[k] / max(1, len(fs)), 4)}
    n_total = sum(min(len(v), a.per_group or len(v)) for v in files.values())
    out = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, 1 thread", "photos": n_total, "rates": res,
           "spread_points": {k: round(100 * (max(v["found"] for v in g.values()) - min(v["found"] for v in g.values())), 2) for k, g in res.items()},
           "ms_per_photo": {"hog": round(1000 * secs["hog"] / n_total, 2), "cascade": round(1000 * secs["cascade"] / n_total, 2)}}
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

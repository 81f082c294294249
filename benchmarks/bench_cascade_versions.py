"""CPU time of two versions of the cascade detector code on the 450x350 photo, calls alternated with dlib HOG.

Used to measure a speed change of the cascade code: extract the old code with
``mkdir -p runs/orig && git archive <commit> faceswap_pipeline weights | tar -x -C runs/orig`` and
compare it with the working tree (same weights, same photo, one thread)::

    python benchmarks/bench_cascade_versions.py --old-root runs/orig --repeat 30 --json out.json

Reported: process CPU time per call (median, IQR) for HOG (upsample 1), the old code and the new
code at ``min_face`` 20 and 24, the new code in both precisions (fp32, auto).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _load(root: str, weights_dir: str | None, **kw: Any) -> Any:
    for m in [k for k in sys.modules if k == "faceswap_pipeline" or k.startswith("faceswap_pipeline.")]:
        del sys.modules[m]
    sys.path.insert(0, str(Path(root).resolve()))
    try:
        from faceswap_pipeline.stages.detect_cascade import CascadeDetector
    finally:
        sys.path.pop(0)
    return CascadeDetector.from_pretrained(weights_dir=weights_dir, **kw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old-root", required=True, help="folder holding the old faceswap_pipeline package (and its weights/)")
    p.add_argument("--new-root", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    import dlib
    from skimage import data as skdata
    from skimage.transform import resize

    photo = resize(skdata.astronaut(), (350, 450), anti_aliasing=True, preserve_range=True).round().astype(np.uint8)
    hog = dlib.get_frontal_face_detector()
    fns: dict[str, Any] = {"hog_upsample1": lambda im: hog(im, 1)}
    for mf in (20, 24):
        fns[f"old_min_face{mf}"] = _load(a.old_root, a.weights_dir, min_face=mf).detect
        fns[f"new_fp32_min_face{mf}"] = _load(a.new_root, a.weights_dir, min_face=mf, precision="fp32").detect
        fns[f"new_auto_min_face{mf}"] = _load(a.new_root, a.weights_dir, min_face=mf).detect
    for f in fns.values():
        f(photo)  # warm-up
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(a.repeat):
        for k, f in fns.items():
            c = time.process_time()
            f(photo)
            cpu[k].append((time.process_time() - c) * 1000)
    out = {
        "image": "skimage astronaut resized to 450x350",
        "threads": 1,
        "cpu_ms": {k: {"median": round(float(np.median(v)), 2), "iqr": round(float(np.subtract(*np.percentile(v, [75, 25]))), 2), "n": len(v)} for k, v in cpu.items()},
    }
    txt = json.dumps(out, indent=2)
    if a.json:
        Path(a.json).write_text(txt + "\n")
    print(txt)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

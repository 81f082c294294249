"""``faceswap-pipeline prepare``: a labelled face folder -> train/val face packs.

Every photo goes through the *inference* code: :class:`~faceswap_pipeline.stages.detect_hog.HogDetector`
(upsample 1), the largest face, then :func:`~faceswap_pipeline.stages.crop.frame_face` with the
chosen framing, so the generators are trained on exactly the crops the pipeline will feed them.

Framing. UTKFace chips are already face-centred 200x200 crops that end only ~12 px (~0.08
box-heights) above dlib's box. The original design's factors ``(1.1, 1.5, 1.1, 1.3)`` reach 0.25 box-heights
above it, so on these chips every training crop would carry a black band that real photos never
show (measured: 22% of each crop window outside the chip, on average). :data:`CHIP_RESCALE`
``(1.1, 1.1, 1.1, 1.3)`` keeps the median face entirely inside the chip and makes the window nearly
square (little letterboxing). It is stored in each pack and in the generator's manifest entry,
and the pipeline crops every face with the framing of the model it feeds.

Fallback. HOG misses ~4% of the chips (profiles, children, very close crops), unevenly across
groups. Rather than drop them, the fixed box :data:`FALLBACK_BOX` (the median HOG box measured on
the chips, as fractions of the chip side) is used; such faces are flagged ``fallback=True``.

Output (``--out DIR``): ``<prefix>_train.npz``, ``<prefix>_val.npz`` (see
:mod:`faceswap_pipeline.train.packs`) and ``<prefix>.json`` (framing, counts per domain, fallback
rate per race, padding statistics, pack sizes, command). The split is
:func:`faceswap_pipeline.train.splits.is_validation`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pipeline.labels import GENDERS, RACES
from faceswap_pipeline.ops.geometry import CHIP_RESCALE
from faceswap_pipeline.train.packs import encode_jpeg, write_pack
from faceswap_pipeline.train.splits import is_validation, parse_utk_name

log = logging.getLogger(__name__)

FALLBACK_BOX: tuple[float, float, float, float] = (0.06, 0.06, 0.905, 0.84)
"""Box used when HOG finds no face, as fractions of (W, H, W, H) of the chip: the median HOG box
(upsample 1) measured on 400 random UTKFace training chips, (12, 12)-(181, 168) on 200x200."""

_EXTS = (".jpg", ".jpeg", ".png")
_DET = None


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def fallback_detection(shape: tuple[int, ...]):  # -> Detection
    """The documented fixed face box for an ``(H, W, ...)`` chip (score 0)."""
    from faceswap_pipeline.types import Detection

    h, w = shape[:2]
    fx0, fy0, fx1, fy1 = FALLBACK_BOX
    return Detection(box=(fx0 * w, fy0 * h, fx1 * w, fy1 * h), score=0.0)


def outside_fraction(crop_box: Sequence[int], shape: tuple[int, ...]) -> float:
    """Fraction of an integer crop window ``(x0, y0, x1, y1)`` lying outside an ``(H, W)`` image."""
    h, w = shape[:2]
    x0, y0, x1, y1 = crop_box
    inside = max(0, min(x1, w) - max(x0, 0)) * max(0, min(y1, h) - max(y0, 0))
    return 1.0 - inside / max(1, (x1 - x0) * (y1 - y0))


def process_image(
    image: np.ndarray, rescale: Sequence[float] = CHIP_RESCALE, size: int = 128, detector: Any = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Detect (largest HOG face, else the fallback box), frame and letterbox one chip.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        rescale: framing factors (left, top, right, bottom).
        size: output square side.
        detector: a :class:`HogDetector` (one is made when None).

    Returns:
        ``(crop, info)``: ``(size, size, 3)`` uint8 RGB and ``{"fallback", "pad", "box", "letterbox"}``
        where ``pad`` is the fraction of the crop window outside the image and ``letterbox`` the
        fraction of the square that is letterbox bars.
    """
    import torch

    from faceswap_pipeline.stages.crop import frame_face
    from faceswap_pipeline.stages.detect_hog import HogDetector

    det = detector if detector is not None else HogDetector(upsample=1)
    dets = det.detect(image)
    fallback = not dets
    face = fallback_detection(image.shape) if fallback else max(dets, key=lambda d: d.width * d.height)
    crop, tf = frame_face(image, face, rescale, size)
    u8 = crop.mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    nw, nh = tf.content_size
    info = {
        "fallback": fallback,
        "pad": outside_fraction(tf.box, image.shape),
        "box": tuple(float(v) for v in face.box),
        "letterbox": 1.0 - nw * nh / float(size * size),
    }
    return np.ascontiguousarray(u8), info


def _init_worker() -> None:
    global _DET
    import torch

    from faceswap_pipeline.stages.detect_hog import HogDetector

    torch.set_num_threads(1)
    _DET = HogDetector(upsample=1)


def _work(job: tuple[str, tuple[float, ...], int, int]) -> dict[str, Any]:
    path, rescale, size, quality = job
    global _DET
    if _DET is None:
        _init_worker()
    try:
        img = _read_rgb(Path(path))
        crop, info = process_image(img, rescale, size, _DET)
        info["jpeg"] = encode_jpeg(crop, quality)
        info["error"] = None
    except Exception as e:  # one bad file must not stop the run; it is counted and logged
        info = {"error": f"{type(e).__name__}: {e}"}
    info["path"] = path
    return info


def _stats(labels: dict[str, np.ndarray], letterbox: np.ndarray, size_bytes: int, min_adult: int, max_adult: int) -> dict[str, Any]:
    g, r, a = labels["gender"], labels["race"], labels["age"]
    fb, pad = labels["fallback"], labels["pad"]
    adult = (a >= min_adult) & (a <= max_adult)
    doms: dict[str, Any] = {}
    for gi, gn in enumerate(GENDERS):
        doms[gn] = {"all_ages": int((g == gi).sum()), f"age_{min_adult}_{max_adult}": int(((g == gi) & adult).sum()),
                    f"age_{min_adult}_{max_adult}_pad<=0.02": int(((g == gi) & adult & (pad <= 0.02)).sum())}
    for ri, rn in enumerate(RACES):
        doms[rn] = {"all_ages": int((r == ri).sum()), "pad<=0.02": int(((r == ri) & (pad <= 0.02)).sum())}
    fallback_rate = {rn: round(float(fb[r == ri].mean()), 4) if (r == ri).any() else None for ri, rn in enumerate(RACES)}
    fallback_rate.update({gn: round(float(fb[g == gi].mean()), 4) if (g == gi).any() else None for gi, gn in enumerate(GENDERS)})
    n = len(g)
    return {
        "n": n,
        "bytes": size_bytes,
        "mib": round(size_bytes / 2**20, 2),
        "domains": doms,
        "fallback_rate": round(float(fb.mean()), 4) if n else None,
        "fallback_rate_by_group": fallback_rate,
        "pad_mean": round(float(pad.mean()), 4) if n else None,
        "pad_median": round(float(np.median(pad)), 4) if n else None,
        "frac_pad_gt_0.01": round(float((pad > 0.01).mean()), 4) if n else None,
        "frac_pad_gt_0.05": round(float((pad > 0.05).mean()), 4) if n else None,
        "letterbox_mean": round(float(letterbox.mean()), 4) if n else None,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceswap-pipeline prepare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", required=True, help="folder of UTKFace-named face photos ({age}_{gender}_{race}_...)")
    p.add_argument("--out", required=True, help="output folder for the packs and their JSON sidecar")
    p.add_argument("--prefix", default="utk", help="pack file name prefix")
    p.add_argument("--rescale", type=float, nargs=4, default=list(CHIP_RESCALE), metavar=("L", "T", "R", "B"),
                   help="per-side framing factors (left top right bottom); becomes the generator's framing")
    p.add_argument("--size", type=int, default=128, help="side of the letterboxed square")
    p.add_argument("--min-age", type=int, default=None, help="drop faces younger than this (e.g. 18 for gender domains)")
    p.add_argument("--max-age", type=int, default=None, help="drop faces older than this (e.g. 70)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (HOG + crop + JPEG)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the stored crops")
    p.add_argument("--limit", type=int, default=None, help="use only the first N files (sorted), for quick checks")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``prepare``; prints the sidecar JSON summary and returns 0 (1 if any file failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    src, out = Path(args.images), Path(args.out)
    if not src.is_dir():
        raise FileNotFoundError(f"--images {src} is not a folder")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in _EXTS and parse_utk_name(p.name) is not None)
    skipped_names = sum(1 for p in src.iterdir() if p.suffix.lower() in _EXTS) - len(files)
    if args.limit:
        files = files[: args.limit]
    rescale = tuple(float(f) for f in args.rescale)
    lab = {p: parse_utk_name(p.name) for p in files}
    if args.min_age is not None:
        files = [p for p in files if lab[p].age >= args.min_age]
    if args.max_age is not None:
        files = [p for p in files if lab[p].age <= args.max_age]
    log.info("prepare: %d files from %s (framing %s, %d workers)", len(files), src, rescale, args.workers)
    jobs = [(str(p), rescale, args.size, args.quality) for p in files]
    t0 = time.time()
    results: list[dict[str, Any]] = []
    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.workers, initializer=_init_worker) as pool:
            for i, r in enumerate(pool.imap(_work, jobs, chunksize=32)):
                results.append(r)
                if (i + 1) % 2000 == 0:
                    log.info("%d / %d (%.0f s)", i + 1, len(jobs), time.time() - t0)
    else:
        _init_worker()
        results = [_work(j) for j in jobs]
    wall = time.time() - t0
    errors = [r for r in results if r["error"]]
    for r in errors:
        log.error("%s: %s", r["path"], r["error"])
    ok = [r for r in results if not r["error"]]
    meta_common = {
        "framing": {"rescale": list(rescale), "size": args.size, "detector": "hog", "upsample": 1},
        "fallback_box_fraction": list(FALLBACK_BOX),
        "size": args.size,
        "quality": args.quality,
        "source": src.name,
        "command": "faceswap-pipeline prepare " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    summary: dict[str, Any] = {**meta_common, "files": len(files), "errors": len(errors),
                               "skipped_unlabelled": skipped_names, "wall_time_s": round(wall, 1), "packs": {}}
    hog_boxes = np.array([r["box"] for r in ok if not r["fallback"]], dtype=np.float64).reshape(-1, 4)
    if len(hog_boxes):
        summary["hog_box_median"] = [round(float(v), 1) for v in np.median(hog_boxes, 0)]
    for split in ("train", "val"):
        rs = [r for r in ok if is_validation(Path(r["path"]).name) == (split == "val")]
        labels_u = [parse_utk_name(Path(r["path"]).name) for r in rs]
        labels = {
            "age": np.array([lb.age for lb in labels_u], np.int16),
            "gender": np.array([lb.gender for lb in labels_u], np.int8),
            "race": np.array([lb.race for lb in labels_u], np.int8),
            "fallback": np.array([r["fallback"] for r in rs], bool),
            "pad": np.array([r["pad"] for r in rs], np.float32),
            "box": np.array([r["box"] for r in rs], np.float32).reshape(-1, 4),
            "name": np.array([Path(r["path"]).name for r in rs], dtype=str),
        }
        path = out / f"{args.prefix}_{split}.npz"
        nbytes = write_pack(path, [r["jpeg"] for r in rs], labels, {**meta_common, "split": split})
        letterbox = np.array([r["letterbox"] for r in rs], np.float32)
        summary["packs"][split] = {"path": str(path), **_stats(labels, letterbox, nbytes, 18, 70)}
        log.info("wrote %s: %d faces, %.1f MiB", path, len(rs), nbytes / 2**20)
    side = out / f"{args.prefix}.json"
    side.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: summary[k] for k in ("files", "errors", "wall_time_s", "framing")}
                     | {s: {"path": v["path"], "n": v["n"], "mib": v["mib"], "fallback_rate": v["fallback_rate"]}
                        for s, v in summary["packs"].items()}))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

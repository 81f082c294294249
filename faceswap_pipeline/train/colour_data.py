"""Colour detection data: FDDB-style VOC annotations and the project's fixed half split.

Every trainer and benchmark that touches ``fddb_dev`` or ``nonface_colour`` uses
:func:`half_split`, so what trains (the *train half*: even-indexed files in sorted order) and
what is scored (the *test half*: odd-indexed files) never mix:

* the cascade retrain and the face-check net take colour negatives (and FDDB positives) from the
  train halves only;
* ``benchmarks/bench_detection_colour.py`` fits each detector's box transform to the FDDB
  annotation convention on the FDDB train half and scores the test half; false positives per 100
  photos are counted on the nonface_colour test half.

Paths are always arguments (no data location is hard-coded).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".ppm")
_BOX = re.compile(r"<bndbox>\s*<xmin>([-\d.]+)</xmin>\s*<ymin>([-\d.]+)</ymin>\s*<xmax>([-\d.]+)</xmax>\s*<ymax>([-\d.]+)</ymax>")


def image_files(folder: str | Path) -> list[Path]:
    """Sorted image files under ``folder`` (recursive)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def half_split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(train half, test half)``: even- and odd-indexed files of the sorted list."""
    files = sorted(files)
    return files[0::2], files[1::2]


def read_voc_boxes(xml_path: str | Path) -> np.ndarray:
    """``(N, 4)`` float64 xyxy boxes of a VOC annotation file (every ``<bndbox>``)."""
    txt = Path(xml_path).read_text()
    v = [[float(x) for x in m] for m in _BOX.findall(txt)]
    return np.array(v, dtype=np.float64).reshape(-1, 4)


def fddb_items(root: str | Path, half: str = "all") -> list[tuple[Path, np.ndarray]]:
    """``[(image path, boxes (N, 4) xyxy)]`` of an FDDB dev folder (``images/``, ``annotations/``).

    ``half``: ``"train"`` (even-indexed images), ``"test"`` (odd-indexed) or ``"all"``.
    """
    root = Path(root)
    files = image_files(root / "images")
    if half != "all":
        tr, te = half_split(files)
        files = {"train": tr, "test": te}[half]
    out = []
    for f in files:
        ann = root / "annotations" / (f.stem + ".xml")
        out.append((f, read_voc_boxes(ann) if ann.is_file() else np.zeros((0, 4))))
    return out


def read_rgb(path: str | Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (grey images replicated, alpha dropped)."""
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path))
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3]).astype(np.uint8)


def face_free_windows(shape: tuple[int, int], faces: np.ndarray, k: int, rng: np.random.Generator, min_side: float = 12.0, max_iou: float = 0.05, grow: float = 1.3) -> np.ndarray:
    """Up to ``k`` random square windows of an image that overlap no (enlarged) face box.

    Windows are log-uniform in side between ``min_side`` and the image's short side; a window is
    rejected when its IoU with any face box grown by ``grow`` exceeds ``max_iou`` or when its centre
    lies inside one (faces the annotation misses are the risk; near-face windows are the point).
    """
    h, w = shape
    hi = max(min_side + 1, float(min(h, w)))
    out = []
    big = faces.copy()
    if len(big):
        c = (big[:, :2] + big[:, 2:]) / 2
        half = (big[:, 2:] - big[:, :2]) * grow / 2
        big = np.c_[c - half, c + half]
    for _ in range(k * 8):
        if len(out) >= k:
            break
        s = float(np.exp(rng.uniform(np.log(min_side), np.log(hi))))
        x = rng.uniform(0, max(0.0, w - s))
        y = rng.uniform(0, max(0.0, h - s))
        b = np.array([x, y, x + s, y + s])
        if len(big):
            lt = np.maximum(b[:2], big[:, :2])
            rb = np.minimum(b[2:], big[:, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            union = s * s + np.prod(big[:, 2:] - big[:, :2], axis=1) - inter
            cx, cy = x + s / 2, y + s / 2
            inside = (cx >= big[:, 0]) & (cx <= big[:, 2]) & (cy >= big[:, 1]) & (cy <= big[:, 3])
            if (inter / union > max_iou).any() or inside.any():
                continue
        out.append(b)
    return np.array(out, dtype=np.float64).reshape(-1, 4)


__all__ = ["face_free_windows", "fddb_items", "half_split", "image_files", "read_rgb", "read_voc_boxes"]

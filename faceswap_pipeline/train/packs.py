"""Compact face packs: many small JPEG face crops + labels in one ``.npz`` (no pickle).

A pack is what ``faceswap-pipeline prepare`` writes and what the trainers read. It holds
letterboxed ``size`` x ``size`` crops made by the inference framing code, JPEG-encoded, plus
per-face labels. Layout of the ``.npz`` (every array is a plain numeric or fixed-width unicode
array, so ``np.load(path, allow_pickle=False)`` reads it):

============  ==================  ===================================================
key           dtype / shape       meaning
============  ==================  ===================================================
``jpeg``      uint8 (total,)      all JPEG files concatenated
``offsets``   int64 (N + 1,)      face ``i`` is ``jpeg[offsets[i]:offsets[i + 1]]``
``age``       int16 (N,)          years (UTKFace label)
``gender``    int8 (N,)           0 male, 1 female
``race``      int8 (N,)           0 white, 1 black, 2 asian, 3 indian, 4 other
``fallback``  bool (N,)           True when HOG missed the face and the fixed box was used
``pad``       float32 (N,)        fraction of the crop window outside the source image
``box``       float32 (N, 4)      the detector (or fallback) box, source pixels
``name``      <U (N,)             source file name
``meta``      uint8 (M,)          UTF-8 JSON: framing, size, quality, command
============  ==================  ===================================================
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceswap_pipeline.labels import GENDERS, RACES

LABEL_KEYS = ("age", "gender", "race", "fallback", "pad", "box", "name")


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an ``(H, W, 3)`` uint8 RGB image (PIL, 4:2:0 chroma, optimised tables)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=int(quality), optimize=True)
    return buf.getvalue()


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB from JPEG bytes."""
    from PIL import Image

    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"))


def write_pack(path: str | os.PathLike[str], jpegs: Sequence[bytes], labels: dict[str, np.ndarray], meta: dict[str, Any]) -> int:
    """Write a pack atomically; returns its size in bytes.

    Args:
        path: destination ``.npz``.
        jpegs: one JPEG byte string per face.
        labels: arrays of length ``N`` for every key of :data:`LABEL_KEYS` (``box`` is ``(N, 4)``).
        meta: JSON-serialisable description (framing, size, quality, command ...).
    """
    n = len(jpegs)
    for k in LABEL_KEYS:
        if k not in labels or len(labels[k]) != n:
            raise ValueError(f"label {k!r} missing or not of length {n}")
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    blob = np.frombuffer(b"".join(jpegs), dtype=np.uint8) if n else np.zeros(0, np.uint8)
    names = np.asarray([str(s) for s in labels["name"]], dtype=str) if n else np.zeros(0, dtype="<U1")
    arrays = {
        "jpeg": blob,
        "offsets": offsets,
        "age": np.asarray(labels["age"], dtype=np.int16),
        "gender": np.asarray(labels["gender"], dtype=np.int8),
        "race": np.asarray(labels["race"], dtype=np.int8),
        "fallback": np.asarray(labels["fallback"], dtype=bool),
        "pad": np.asarray(labels["pad"], dtype=np.float32),
        "box": np.asarray(labels["box"], dtype=np.float32).reshape(n, 4),
        "name": names,
        "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
    }
    path = Path(path)
    atomic_savez(path, **arrays)
    return path.stat().st_size


def atomic_savez(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """``np.savez`` to a temporary file in the same folder, then rename (never a half-written ``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _decode_range(args: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    blob, offsets = args
    return np.stack([decode_jpeg(blob[offsets[i] : offsets[i + 1]]) for i in range(len(offsets) - 1)])


class FacePack:
    """Read a face pack (loads it fully into memory; no pickle).

    Two layouts are read: the project's packs (:func:`write_pack`: concatenated JPEGs ``jpeg`` +
    ``offsets``, label arrays, UTF-8 JSON ``meta``) and plain packs with a uint8 ``images`` array
    ``(N, H, W, 3)`` (or ``(N, 3, H, W)``); labels and ``meta`` are optional in both.

    Attributes:
        meta: the pack's JSON description (framing, size, quality, ...; ``{}`` when it has none).
        labels: dict of per-face arrays (:data:`LABEL_KEYS` for the project's packs; every array
            of length N in the file).
        size: side of the square crops.

    Example:
        >>> pack = FacePack("data_cache/packs/utk_train.npz")  # doctest: +SKIP
        >>> idx = pack.select(gender=0, min_age=18, max_age=70, max_pad=0.02)  # doctest: +SKIP
        >>> faces = pack.images(idx[:16])  # (16, 128, 128, 3) uint8  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._images: np.ndarray | None = None
        with np.load(self.path, allow_pickle=False) as z:
            keys = list(z.files)
            if "jpeg" in keys and "offsets" in keys:
                self._blob = z["jpeg"]
                self._offsets = z["offsets"]
                n = len(self._offsets) - 1
            else:
                images = z["images"]
                if images.shape[-1] != 3 and images.shape[1] == 3:
                    images = images.transpose(0, 2, 3, 1)
                self._images = images
                n = len(images)
            self.labels: dict[str, np.ndarray] = {k: z[k] for k in keys if k not in ("jpeg", "offsets", "images", "meta") and z[k].ndim >= 1 and len(z[k]) == n}
            self.meta: dict[str, Any] = json.loads(z["meta"].tobytes().decode("utf-8")) if "meta" in keys else {}
        self._n = n
        side = self._images.shape[1] if self._images is not None and n else 128
        self.size = int(self.meta.get("size", side))

    def __len__(self) -> int:
        return self._n

    def numeric_labels(self) -> dict[str, np.ndarray]:
        """The 1-D numeric (int, float, bool) label arrays, the ones a selection string can test."""
        return {k: v for k, v in self.labels.items() if v.ndim == 1 and v.dtype.kind in "iufb"}

    def __repr__(self) -> str:
        return f"FacePack({str(self.path)!r}, n={len(self)}, size={self.size})"

    def jpeg(self, i: int) -> bytes:
        """The stored JPEG bytes of face ``i``."""
        return self._blob[self._offsets[i] : self._offsets[i + 1]].tobytes()

    def images(self, idx: Sequence[int] | np.ndarray | int) -> np.ndarray:
        """Decode faces ``idx``.

        Returns:
            ``(N, S, S, 3)`` uint8 RGB (``(S, S, 3)`` when ``idx`` is a single int).
        """
        if self._images is not None:
            return self._images[idx] if isinstance(idx, (int, np.integer)) else self._images[np.asarray(idx, dtype=np.int64)]
        if isinstance(idx, (int, np.integer)):
            return decode_jpeg(self.jpeg(int(idx)))
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([decode_jpeg(self.jpeg(int(i))) for i in idx])

    def select(
        self,
        gender: int | str | None = None,
        race: int | str | Sequence[int | str] | None = None,
        min_age: int | None = None,
        max_age: int | None = None,
        max_pad: float | None = None,
        fallback: bool | None = None,
    ) -> np.ndarray:
        """Indices (int64, ascending) of the faces matching every given condition.

        Args:
            gender: 0/"male" or 1/"female".
            race: one race (index or name from :data:`RACES`) or a list of them.
            min_age, max_age: inclusive age bounds (years).
            max_pad: keep faces whose crop window is at most this fraction outside the photo.
            fallback: True keeps only faces HOG missed, False only faces HOG found.
        """
        keep = np.ones(len(self), dtype=bool)
        if gender is not None:
            g = GENDERS.index(gender) if isinstance(gender, str) else int(gender)
            keep &= self.labels["gender"] == g
        if race is not None:
            races = [race] if isinstance(race, (int, str, np.integer)) else list(race)
            codes = [RACES.index(r) if isinstance(r, str) else int(r) for r in races]
            keep &= np.isin(self.labels["race"], codes)
        if min_age is not None:
            keep &= self.labels["age"] >= min_age
        if max_age is not None:
            keep &= self.labels["age"] <= max_age
        if max_pad is not None:
            keep &= self.labels["pad"] <= max_pad
        if fallback is not None:
            keep &= self.labels["fallback"] == bool(fallback)
        return np.flatnonzero(keep)

    def subset(self, idx: Sequence[int] | np.ndarray, path: str | os.PathLike[str], note: str = "") -> FacePack:
        """Write faces ``idx`` (their JPEG bytes unchanged) to a new pack at ``path`` and open it.

        Used to make smaller packs (e.g. one domain, adults only) to carry to another machine.
        """
        idx = np.asarray(idx, dtype=np.int64)
        labels = {k: self.labels[k][idx] for k in LABEL_KEYS}
        meta = {**self.meta, "subset_of": self.path.name, "subset_note": note}
        write_pack(path, [self.jpeg(int(i)) for i in idx], labels, meta)
        return FacePack(path)

    def decode_all(self, workers: int = 1, idx: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Decode every face (or ``idx``), optionally in ``workers`` processes (at most 2 advised here).

        Returns:
            ``(N, S, S, 3)`` uint8 RGB, in index order.
        """
        sel = np.arange(len(self)) if idx is None else np.asarray(idx, dtype=np.int64)
        if workers <= 1 or len(sel) < 256:
            return self.images(sel)
        chunks = np.array_split(sel, workers * 8)
        jobs = []
        for c in chunks:
            lens = self._offsets[c + 1] - self._offsets[c]
            offs = np.zeros(len(c) + 1, np.int64)
            offs[1:] = np.cumsum(lens)
            blob = np.concatenate([self._blob[self._offsets[i] : self._offsets[i + 1]] for i in c]) if len(c) else np.zeros(0, np.uint8)
            jobs.append((blob, offs))
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_decode_range, [j for j in jobs if len(j[1]) > 1])
        return np.concatenate(parts) if parts else np.zeros((0, self.size, self.size, 3), np.uint8)


_SEL = re.compile(r"^\s*(\w+)\s*(>=|<=|==|=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")


def selection_mask(labels: dict[str, np.ndarray], select: str) -> np.ndarray:
    """Boolean mask of the rows a selection string keeps (``"gender=0,age>=18"``; empty = all)."""
    n = len(next(iter(labels.values()))) if labels else 0
    mask = np.ones(n, dtype=bool)
    for term in filter(None, (t.strip() for t in select.split(","))):
        m = _SEL.match(term)
        if not m or m.group(1) not in labels:
            raise ValueError(f"bad selection term {term!r} (labels: {sorted(labels)})")
        key, op, val = m.group(1), m.group(2), float(m.group(3))
        col = labels[key].astype(np.float64)
        mask &= {"=": col == val, "==": col == val, ">=": col >= val, "<=": col <= val, "<": col < val, ">": col > val}[op]
    return mask


def read_pack(
    path: str | os.PathLike[str], select: str = "", limit: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Read the selected faces of a face pack (either :class:`FacePack` layout) and its description.

    The description is the embedded ``meta`` merged over a sidecar JSON (``<path>.json``, or
    ``<prefix>.json`` for ``<prefix>_train.npz``) when present.

    Args:
        path: the ``.npz`` pack.
        select: a selection string over the numeric labels (:func:`selection_mask`; empty = all).
        limit: at most this many faces, evenly spaced over the selection (0 = all).

    Returns:
        ``(images, labels, meta)``: images ``(n, H, W, 3)`` uint8 RGB of the selected faces (in
        pack order), labels a dict of the selected rows of every 1-D numeric array, and the
        description.
    """
    path = Path(path)
    pack = FacePack(path)
    labels = pack.numeric_labels()
    idx = np.flatnonzero(selection_mask(labels, select)) if select else np.arange(len(pack))
    if limit and len(idx) > limit:  # evenly spaced over the selection (packs are name-sorted, i.e. by age)
        idx = idx[np.linspace(0, len(idx) - 1, limit).round().astype(np.int64)]
    images = pack.images(idx) if len(idx) else np.zeros((0, 0, 0, 3), np.uint8)
    meta = dict(pack.meta)
    stem = re.sub(r"_(train|val|test)$", "", path.stem)
    for side in (path.with_suffix(".json"), path.with_name(stem + ".json")):
        if side.is_file():
            meta = {**json.loads(side.read_text(encoding="utf-8")), **meta}
            break
    return np.ascontiguousarray(images), {k: v[idx] for k, v in labels.items()}, meta


__all__ = ["FacePack", "read_pack", "selection_mask", "write_pack", "atomic_savez", "encode_jpeg", "decode_jpeg", "LABEL_KEYS", "GENDERS", "RACES"]

"""Stage 1: dlib's HOG + linear-SVM frontal face detector, every face in the photo."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from faceswap_pipeline.stages.base import DetectorStage
from faceswap_pipeline.types import Detection

log = logging.getLogger(__name__)


def _to_detector_input(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Contiguous uint8 RGB, shrunk (area-averaged) so its longer side is <= ``max_side``.

    Returns the array and the factor that maps its coordinates back to the original's.
    """
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return np.ascontiguousarray(image), 1.0
    from skimage.transform import resize

    f = max(h, w) / max_side
    small = resize(image, (max(1, round(h / f)), max(1, round(w / f))), anti_aliasing=True, preserve_range=True)
    return np.ascontiguousarray(small.round().astype(np.uint8)), f


class HogDetector(DetectorStage):
    """dlib ``get_frontal_face_detector()`` over an image, all faces kept.

    Args:
        upsample: times dlib doubles the image before scanning (1 finds faces down to ~40 px).
        min_face: drop faces whose box side (source pixels) is smaller than this.
        threshold: dlib's ``adjust_threshold``; scores are SVM margins, higher is surer.
        max_side: images whose longer side exceeds this are shrunk for detection only (bounds time
            and memory on huge photos; boxes are mapped back to full resolution). None: never.

    ``detect(image)`` takes ``(H, W, 3)`` uint8 RGB and returns :class:`Detection` boxes
    ``(x0, y0, x1, y1)`` in that image's pixels, highest score first.
    """

    name = "detect"

    def __init__(self, upsample: int = 1, min_face: int = 0, threshold: float = 0.0, max_side: int | None = 2000) -> None:
        self.upsample = int(upsample)
        self.min_face = int(min_face)
        self.threshold = float(threshold)
        self.max_side = max_side
        self._det: Any = None  # dlib is imported on first use, never at import time

    def _detector(self) -> Any:
        if self._det is None:
            import dlib

            self._det = dlib.get_frontal_face_detector()
        return self._det

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (``(H, W, 3)`` uint8 RGB), highest score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        small, f = _to_detector_input(image, self.max_side)
        rects, scores, _ = self._detector().run(small, self.upsample, self.threshold)
        dets = []
        for r, s in zip(rects, scores):
            box = (r.left() * f, r.top() * f, (r.right() + 1) * f, (r.bottom() + 1) * f)
            if min(box[2] - box[0], box[3] - box[1]) >= self.min_face:
                dets.append(Detection(box=box, score=float(s)))
        return sorted(dets, key=lambda d: -d.score)
    def warmup(self) -> None:
        """Import dlib and build its detector now (else the first photo pays for it)."""
        self.detect(np.zeros((80, 80, 3), np.uint8))

    def __repr__(self) -> str:
        return f"HogDetector(upsample={self.upsample}, min_face={self.min_face}, threshold={self.threshold})"



__all__ = ["HogDetector"]

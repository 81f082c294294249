"""Typed records passed between stages.

Coordinates are source-image pixels, boxes are ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive
(a box covering pixel columns 10..19 is ``(10, y0, 20, y1)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is not imported to define the records
    import torch

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in source-image pixels (floats; may extend past the image).
        score: detector confidence (dlib HOG: SVM margin; cascade: probability in [0, 1]).
        landmarks: optional ``(K, 2)`` float32 array of ``(x, y)`` points, or None.
    """

    box: Box
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)  # equality: box and score

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: box rounded to 0.01 px."""
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4)}


@dataclass(frozen=True)
class CropTransform:
    """Where a letterboxed face crop came from, and how to go back.

    The crop window ``box`` (integer source pixels, may extend past the image, where the crop is
    padded with black) is resized by ``scale`` (same factor on both axes) to ``content_size`` and
    placed at ``offset`` inside a ``size`` x ``size`` square. A source point ``p`` maps to
    ``(p - box[:2]) * scale + offset`` in the square.

    Attributes:
        box: ``(x0, y0, x1, y1)`` integer crop window in source pixels.
        size: side of the letterboxed square (128 for the shipped generators).
        content_size: ``(w, h)`` of the resized crop inside the square.
        offset: ``(ox, oy)`` of the content's top-left corner inside the square.
    """

    box: tuple[int, int, int, int]
    size: int
    content_size: tuple[int, int]
    offset: tuple[int, int]

    @property
    def crop_size(self) -> tuple[int, int]:
        """``(w, h)`` of the crop window in source pixels."""
        return (self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def scale(self) -> tuple[float, float]:
        """Per-axis factor from source pixels to square pixels (equal up to rounding)."""
        cw, ch = self.crop_size
        return (self.content_size[0] / cw, self.content_size[1] / ch)

    def to_square(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` source ``(x, y)`` points into the square's coordinates."""
        p = np.asarray(points, dtype=np.float64)
        sx, sy = self.scale
        return np.stack(
            [(p[:, 0] - self.box[0]) * sx + self.offset[0], (p[:, 1] - self.box[1]) * sy + self.offset[1]], axis=1
        )

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_square`: ``(N, 2)`` square points back to source pixels."""
        p = np.asarray(points, dtype=np.float64)
        sx, sy = self.scale
        return np.stack(
            [(p[:, 0] - self.offset[0]) / sx + self.box[0], (p[:, 1] - self.offset[1]) / sy + self.box[1]], axis=1
        )


@dataclass
class FaceRecord:
    """A face as it moves through the pipeline (mutable working record).

    Attributes:
        detection: where the detector found it.
        transform: crop/letterbox geometry (set by the crop stage).
        crop: ``(3, S, S)`` float32 tensor in [0, 1], the letterboxed face (crop stage).
        direction: which translation this face gets (e.g. ``"male2female"``), or None to skip.
        attributes: predictions of the attribute network, e.g. ``{"p_female": 0.93}``.
        output: ``(3, S', S')`` float32 tensor in [0, 1], the translated (and maybe upscaled) square.
        actions: what was done to this face, for the report (e.g. ``["translate:male2female"]``).
        selected: False when the face policy leaves this face out (no stage changes it).
        strength: edit strength the translation was applied with (0 = unchanged .. 1 = full).
        rotation: degrees the crop was turned by to level the eyes (0: not aligned), see
            :mod:`faceswap_pipeline.ops.align`; paste-back turns the output back.
    """

    detection: Detection
    transform: CropTransform | None = None
    crop: torch.Tensor | None = None
    direction: str | None = None
    attributes: dict[str, float] = field(default_factory=dict)
    output: torch.Tensor | None = None
    actions: list[str] = field(default_factory=list)
    selected: bool = True
    strength: float | None = None
    rotation: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = self.detection.to_dict()
        if self.transform is not None:
            d["crop_box"] = list(self.transform.box)
        d["direction"] = self.direction
        if self.attributes:
            d["attributes"] = {k: round(float(v), 4) for k, v in self.attributes.items()}
        d["actions"] = list(self.actions)
        if not self.selected:
            d["selected"] = False
        if self.strength is not None:
            d["strength"] = round(float(self.strength), 4)
        if self.rotation:
            d["rotation"] = round(float(self.rotation), 2)
        return d


@dataclass
class ImageRecord:
    """One image as it moves through the pipeline.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the input photo (never modified in place).
        faces: the faces found so far.
        result: ``(H, W, 3)`` uint8 RGB output (set by the blend stage), else None.
        key: caller's identifier (e.g. a file path) used in reports.
        error: set when a stage failed for this image; later stages skip it.
        timings: seconds spent per stage for this image (per image; batched network stages split their batch time by faces).
    """

    image: np.ndarray
    faces: list[FaceRecord] = field(default_factory=list)
    result: np.ndarray | None = None
    key: str = ""
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

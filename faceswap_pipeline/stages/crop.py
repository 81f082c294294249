"""Stages 2+3: frame each face (the original design's per-side rescale) and letterbox it to a square."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from faceswap_pipeline.ops.geometry import SEED_RESCALE, crop_letterbox, rescale_box
from faceswap_pipeline.types import CropTransform, Detection, ImageRecord


def frame_face(
    image: np.ndarray, det: Detection, rescale: Sequence[float] = SEED_RESCALE, size: int = 128
) -> tuple[torch.Tensor, CropTransform]:
    """Crop one detected face the way every model of this project sees faces.

    This is *the* framing function: training-data preparation calls it too, so a generator sees
    at inference exactly the kind of crop it was trained on.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        det: the detection (HOG framing).
        rescale: per-side factors ``(left, top, right, bottom)``, see
            :func:`~faceswap_pipeline.ops.geometry.rescale_box`.
        size: side of the letterboxed square.

    Returns:
        ``(crop, transform)``: ``(3, size, size)`` float32 in [0, 1] and its
        :class:`~faceswap_pipeline.types.CropTransform`.
    """
    return crop_letterbox(image, rescale_box(det.box, rescale), size)


class CropLetterbox:
    """Stage: sets ``face.crop`` ``(3, size, size)`` float32 in [0, 1] and ``face.transform``.

    Args:
        rescale: per-side enlargement of the detector box; default: the framing the shipped
            generators were trained with (``framing.rescale`` of ``cyclegan.male2female`` in the
            manifest of ``weights_dir``). The pipeline passes its generators' own framing.
        size: square side; default: the generators' (``framing.size``, 128).
        weights_dir: where the defaults are read (default: the shipped weights, or
            ``$FACESWAP_WEIGHTS``).
    """

    name = "crop"
    batched = False

    def __init__(self, rescale: Sequence[float] | None = None, size: int | None = None,
                 weights_dir: str | os.PathLike[str] | None = None) -> None:
        if rescale is None or size is None:
            from faceswap_pipeline.weights import model_framing

            model_rescale, model_size = model_framing(["cyclegan.male2female"], weights_dir)
            rescale = model_rescale if rescale is None else rescale
            size = model_size if size is None else size
        self.rescale = tuple(float(f) for f in rescale)
        self.size = int(size)

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            for face in rec.faces:
                face.crop, face.transform = frame_face(rec.image, face.detection, self.rescale, self.size)
        return batch

    def __repr__(self) -> str:
        return f"CropLetterbox(rescale={self.rescale}, size={self.size})"


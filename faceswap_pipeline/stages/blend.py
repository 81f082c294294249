"""Stage 6: feathered paste-back of every processed face into a copy of the photo."""

from __future__ import annotations

import numpy as np
import torch

from faceswap_pipeline.ops.align import unrotate_window
from faceswap_pipeline.ops.blend import paste
from faceswap_pipeline.ops.harmonise import harmonise_in_photo
from faceswap_pipeline.ops.masks import LANDMARK_MASKS, MASK_SHAPES, paste_mask
from faceswap_pipeline.ops.seamless import BLEND_MODES, paste_window, window_face
from faceswap_pipeline.types import ImageRecord

HARMONISE = ("auto", "on", "off")
"""Skin-tone harmonisation settings of :class:`FeatherBlend`."""

GENDER_DIRECTIONS = ("male2female", "female2male")
"""Directions that keep the skin tone: ``harmonise="auto"`` leaves their surround alone."""

LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights (what Pillow's ``convert("L")`` uses)."""

GREY_CHROMA = 6
"""A photo counts as greyscale when 99.5 % of its pixels have ``max(R, G, B) - min(R, G, B)`` at or
below this many levels: exactly grey files (0) and black-and-white photos stored as colour JPEGs
(whose compression leaves a few levels of chroma noise)."""


def is_greyscale(image: np.ndarray, tolerance: int = GREY_CHROMA) -> bool:
    """Whether an ``(H, W, 3)`` uint8 RGB photo is greyscale (see :data:`GREY_CHROMA`).

    Large photos are judged on a regular subsample of at most ~1M pixels.
    """
    if image.ndim != 3 or image.shape[2] < 3:
        return True
    h, w = image.shape[:2]
    step = max(1, int(np.sqrt(h * w / 1_000_000)))
    px = image[::step, ::step, :3]
    if np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2]):
        return True
    chroma = px.max(axis=2).astype(np.int16) - px.min(axis=2)
    return float(np.percentile(chroma, 99.5)) <= tolerance


def to_grey(square: torch.Tensor) -> torch.Tensor:
    """A ``(3, H, W)`` float face square as grey: its luma, repeated in the three channels."""
    w = torch.tensor(LUMA, dtype=square.dtype, device=square.device).view(3, 1, 1)
    return (square * w).sum(0, keepdim=True).expand(3, -1, -1).contiguous()


class FeatherBlend:
    """Stage: sets ``rec.result`` = the photo with every face that has an ``output`` blended in.

    Faces are pasted in detection order. Pixels outside every face's blending mask stay
    bit-identical to the input. Into a greyscale photo (:func:`is_greyscale`) a face is pasted
    as grey (its luma), so a black-and-white photo stays black and white (action ``"grey"``).

    Args:
        feather: fall-off width as a fraction of the face size (landmark masks: the face
            outline's extent; ellipse / rect: the face window's shorter side).
        shape: ``"auto"`` (default: ``"landmarks"`` for faces that have landmarks, else
            ``"ellipse"``), ``"landmarks"`` (face-shaped, :func:`~faceswap_pipeline.ops.masks.landmark_mask`),
            ``"head"`` (the face with hairline and hair),
            ``"ellipse"`` or ``"rect"`` (the original design's square feather), see :func:`~faceswap_pipeline.ops.masks.paste_mask`.
        mode: ``"feather"`` (alpha mix), ``"laplacian"`` (multi-band) or ``"poisson"`` (OpenCV's
            seamless cloning), see :mod:`faceswap_pipeline.ops.seamless`.
        harmonise: move the skin around each face (neck, ears, forehead inside its crop window)
            toward the swapped face's new tone (:mod:`faceswap_pipeline.ops.harmonise`):
            ``"auto"`` (default: for race swaps, whose skin tone changes, with the feather and
            multi-band blends; the Poisson blend already leaves no colour step at the boundary and
            harmonising before it measured a slightly larger one), ``"on"`` or ``"off"``.
            Recorded per face as action ``"harmonise"`` with the measured shift in
            ``face.attributes["tone_shift_de"]``.
    """

    name = "blend"
    batched = False

    def __init__(self, feather: float = 0.12, shape: str = "auto", mode: str = "feather", harmonise: str = "auto") -> None:
        if not 0.0 <= feather <= 0.5:
            raise ValueError(f"feather must be in [0, 0.5], got {feather}")
        if shape not in ("auto", *MASK_SHAPES):
            raise ValueError(f"shape must be one of auto, {', '.join(MASK_SHAPES)}, not {shape!r}")
        if mode not in BLEND_MODES:
            raise ValueError(f"mode must be one of {', '.join(BLEND_MODES)}, not {mode!r}")
        if harmonise not in HARMONISE:
            raise ValueError(f"harmonise must be one of {', '.join(HARMONISE)}, not {harmonise!r}")
        self.feather = float(feather)
        self.shape = shape
        self.mode = mode
        self.harmonise = harmonise

    def harmonises(self, direction: str | None) -> bool:
        """Whether a face translated in ``direction`` gets skin-tone harmonisation."""
        if self.harmonise == "auto":  # Poisson already matches the boundary (measured: bench_harmonise.py)
            return direction is not None and direction not in GENDER_DIRECTIONS and self.mode != "poisson"
        return self.harmonise == "on"

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        for rec in batch:
            out = rec.image.copy()
            faces = [f for f in rec.faces if f.output is not None and f.transform is not None]
            grey = bool(faces) and is_greyscale(rec.image)
            for face in faces:
                square = face.output
                if grey:
                    square = to_grey(square)
                    face.actions.append("grey")
                points = face.detection.landmarks
                shape = ("landmarks" if points is not None else "ellipse") if self.shape == "auto" else self.shape
                plain = self.mode == "feather" and shape not in LANDMARK_MASKS and not face.rotation
                if plain and not self.harmonises(face.direction):
                    paste(out, square, face.transform, self.feather, shape)  # the original design's paste-back, unchanged
                else:
                    window = window_face(square, face.transform)
                    alpha = paste_mask(face.transform.box, out.shape[:2], self.feather, shape, points)
                    if face.rotation:  # an aligned face: turn it back, paste only where it is defined
                        window, valid = unrotate_window(window, face.rotation)
                        alpha = alpha * valid
                    if self.harmonises(face.direction) and not grey:
                        shift = harmonise_in_photo(out, window, face.transform.box, alpha)
                        face.attributes["tone_shift_de"] = round(shift.magnitude, 3)
                        face.actions.append("harmonise")
                    if plain:
                        paste(out, square, face.transform, self.feather, shape)
                    else:
                        paste_window(out, window, face.transform.box, alpha, self.mode)
                face.actions.append("blend")  # mode and mask are in the pipeline's settings record
            rec.result = out
        return batch

    def __repr__(self) -> str:
        return f"FeatherBlend(feather={self.feather}, shape={self.shape!r}, mode={self.mode!r}, harmonise={self.harmonise!r})"

"""68-point facial landmarks: dlib's shape predictor (the teacher), the distillation loss and the error metric.

Coordinates follow the project's convention: continuous pixel coordinates where pixel ``i``
covers ``[i, i + 1)`` (so a box ``(x0, y0, x1, y1)`` has ``x1`` exclusive). dlib reports pixel
centres as integers; :func:`dlib_landmarks` adds 0.5 so its points are in this convention.

Point order is iBUG 300-W / dlib's: jaw 0-16, brows 17-26, nose 27-35, eyes 36-41 (the
subject's right eye, left in the image) and 42-47, mouth 48-67.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
OUTER_EYE_CORNERS = (36, 45)
"""Points whose distance is the inter-ocular normaliser (300-W's outer eye corners)."""
JAW = tuple(range(17))
BROWS = tuple(range(17, 27))
LEFT_EYE, RIGHT_EYE = tuple(range(36, 42)), tuple(range(42, 48))


def shape_predictor_path() -> str:
    """Path of dlib's 68-point model in the ``face_recognition_models`` package (no ``pkg_resources``).

    Raises:
        FileNotFoundError: the package (``pip install face-recognition-models``) or its file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "dlib landmarks need the face_recognition_models package (pip install face-recognition-models); "
            "or use the shipped landmark CNN (landmarks='cnn')"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from face_recognition_models")
    return str(path)


@lru_cache(maxsize=1)
def _predictor() -> Any:
    import dlib

    return dlib.shape_predictor(shape_predictor_path())


def dlib_landmarks(image: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """dlib's 68 points for each face box of one photo.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey).
        boxes: ``(x0, y0, x1, y1)`` per face (HOG framing, the box dlib's predictor was trained on).

    Returns:
        ``(N, 68, 2)`` float32 ``(x, y)`` in source pixels.
    """
    import dlib

    img = np.ascontiguousarray(image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8))
    pred = _predictor()
    out = np.zeros((len(boxes), 68, 2), np.float32)
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = (int(round(float(v))) for v in b)
        shape = pred(img, dlib.rectangle(x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)))
        out[i] = [(p.x + 0.5, p.y + 0.5) for p in shape.parts()]
    return out


def inter_ocular(points: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Distance between the outer eye corners (points 36 and 45) of ``(..., 68, 2)`` landmarks."""
    a, b = points[..., OUTER_EYE_CORNERS[0], :], points[..., OUTER_EYE_CORNERS[1], :]
    if isinstance(points, torch.Tensor):
        return torch.linalg.vector_norm(a - b, dim=-1)
    return np.linalg.norm(a - b, axis=-1)


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3, min_iod: float = 1e-2) -> torch.Tensor:
    """Distillation loss: mean point-to-point distance over the target's inter-ocular distance.

    Point ``i`` of the prediction is compared with point ``i`` of the target only (not a
    pairwise or sorted matching: the original landmark design's "mean pairwise squared error" ignores which point is
    which, and silently broke its training). ``sqrt(d^2 + eps^2) - eps`` keeps the gradient finite
    at 0 and is exactly 0 for a perfect prediction.

    Args:
        pred, target: ``(B, 68, 2)`` in the same units (any).
        eps: smoothing, in those units.
        min_iod: lower bound of the normaliser (same units), for degenerate targets.

    Returns:
        Scalar: mean over faces of the (smoothed) normalised mean error.
    """
    d = torch.sqrt(((pred - target) ** 2).sum(-1) + eps * eps) - eps  # (B, 68)
    iod = inter_ocular(target).clamp_min(min_iod)  # (B,)
    return (d.mean(-1) / iod).mean()


def nme(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-face normalised mean error: mean point distance / inter-ocular distance of ``target``.

    Args:
        pred, target: ``(N, 68, 2)``.

    Returns:
        ``(N,)`` float64.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    return np.linalg.norm(p - t, axis=-1).mean(-1) / np.maximum(np.linalg.norm(t[:, 36] - t[:, 45], axis=-1), 1e-9)


def yaw_ratio(points: np.ndarray) -> np.ndarray:
    """A pose proxy: where the nose tip (30) lies between the jaw's ends (0, 16), 0..1; 0.5 = frontal."""
    p = np.asarray(points, dtype=np.float64)
    w = np.maximum(p[:, 16, 0] - p[:, 0, 0], 1e-9)
    return (p[:, 30, 0] - p[:, 0, 0]) / w


def eye_angle(points: np.ndarray) -> float:
    """Roll of a face in radians (image y down): angle of the line from the left-image eye centre to the other."""
    p = np.asarray(points, dtype=np.float64)
    a, b = p[list(LEFT_EYE)].mean(0), p[list(RIGHT_EYE)].mean(0)
    return float(np.arctan2(b[1] - a[1], b[0] - a[0]))

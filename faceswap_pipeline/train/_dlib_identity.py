"""Identity distance between a face and its translation with dlib's face-recognition ResNet.

The 128-d descriptors of ``dlib_face_recognition_resnet_model_v1`` (from the installed
``face_recognition_models`` package; located without importing it, as its ``__init__`` needs
``pkg_resources``) are compared by Euclidean distance; dlib's own "same person" threshold is 0.6.
Landmarks (5-point) are found on each image separately inside one face box: the HOG detection on
the real face (upsample 1), or the crop's central 70 % when HOG finds none.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


@lru_cache(maxsize=1)
def _models():  # noqa: ANN202 - (detector, shape predictor, recogniser)
    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(root / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(root / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def _u8(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((x.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def identity_distances(real01: torch.Tensor, fake01: torch.Tensor) -> np.ndarray:
    """Per-face descriptor distance.

    Shape: two (N, 3, H, W) float in [0, 1] -> (N,) float64 (dlib units; < 0.6 = same person).
    """
    import dlib

    det, sp, rec = _models()
    out = np.empty(len(real01))
    for i in range(len(real01)):
        a, b = _u8(real01[i]), _u8(fake01[i])
        h, w = a.shape[:2]
        boxes = det(a, 1)
        box = max(boxes, key=lambda r: r.area()) if len(boxes) else dlib.rectangle(int(0.15 * w), int(0.15 * h), int(0.85 * w), int(0.85 * h))
        da = np.asarray(rec.compute_face_descriptor(a, sp(a, box)))
        db = np.asarray(rec.compute_face_descriptor(b, sp(b, box)))
        out[i] = float(np.linalg.norm(da - db))
    return out


def mean_identity_distance(real01: torch.Tensor, fake01: torch.Tensor) -> float:
    """Mean of :func:`identity_distances`."""
    return float(identity_distances(real01, fake01).mean())

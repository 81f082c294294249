"""Stage: 68-point landmarks of every face (the shipped landmark CNN, batched, or dlib's shape predictor).

The landmarks land in ``face.detection.landmarks`` (``(68, 2)`` float32, source pixels), where the
blend stage's face-shaped mask and the optional alignment read them.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from faceswap_pipeline.ops.landmarks import dlib_landmarks
from faceswap_pipeline.stages.base import for_chunks
from faceswap_pipeline.types import ImageRecord

LANDMARKERS = ("cnn", "dlib")
MODEL_NAME = "landmarks.v1"


class LandmarkDetector:
    """Stage: sets ``face.detection.landmarks`` for every face.

    Args:
        method: ``"cnn"`` (the landmark CNN on the 128 px crop: one batched forward pass for all
            faces of all images; needs ``model``) or ``"dlib"`` (dlib's 68-point predictor on the
            photo with the detector box; needs the ``face_recognition_models`` package).
        model: the :class:`~faceswap_pipeline.archs.landmarks.LandmarkNet` for ``"cnn"``.
        device: where the CNN runs.
        batch_size: faces per forward pass.
    """

    name = "landmarks"
    batched = True

    def __init__(self, method: str = "cnn", model: torch.nn.Module | None = None, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        if method not in LANDMARKERS:
            raise ValueError(f"landmarks must be one of {', '.join(LANDMARKERS)}, not {method!r}")
        if method == "cnn" and model is None:
            raise ValueError("the 'cnn' landmarker needs a model (LandmarkDetector.from_pretrained)")
        self.method = method
        self.model = model
        self.device = torch.device(device)
        self.batch_size = int(batch_size)

    @classmethod
    def from_pretrained(cls, method: str = "cnn", device: str | torch.device = "cpu", weights_dir: str | os.PathLike[str] | None = None,
                        batch_size: int = 64) -> LandmarkDetector:
        """The shipped landmark CNN (``landmarks.v1``), or dlib's predictor for ``method="dlib"``."""
        if method == "dlib":
            from faceswap_pipeline.ops.landmarks import shape_predictor_path

            shape_predictor_path()  # fail now, with the reason, rather than on the first photo
            return cls("dlib")
        from faceswap_pipeline.weights import load_model

        return cls(method, load_model(MODEL_NAME, weights_dir, device), device, batch_size)

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        faces = [(rec, f) for rec in batch for f in rec.faces]
        if not faces:
            return batch
        if self.method == "dlib":
            for rec, f in faces:
                pts = dlib_landmarks(rec.image, [f.detection.box])[0]
                f.detection = dataclasses.replace(f.detection, landmarks=pts)
            return batch
        todo = [(rec, f) for rec, f in faces if f.crop is not None and f.transform is not None]
        assert self.model is not None
        def run(chunk: list) -> None:
            x = torch.stack([f.crop for _, f in chunk]).to(self.device, torch.float32)
            with torch.inference_mode():
                pts = self.model(x).float().cpu().numpy() * x.shape[-1]
            for (_, f), p in zip(chunk, pts):
                src = f.transform.to_source(p).astype(np.float32)
                f.detection = dataclasses.replace(f.detection, landmarks=src)

        for_chunks(self, todo, run)
        return batch

    def settings(self) -> dict[str, object]:
        from faceswap_pipeline.stages.base import module_digest

        out: dict[str, object] = {"class": "LandmarkDetector", "method": self.method}
        if self.model is not None:
            out["weights"] = module_digest(self.model)
        return out

    def warmup(self) -> None:
        if self.model is not None:
            with torch.inference_mode():
                self.model(torch.zeros(1, 3, 128, 128, device=self.device))

    def __repr__(self) -> str:
        return f"LandmarkDetector(method={self.method!r})"

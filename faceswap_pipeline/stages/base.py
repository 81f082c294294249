"""The stage protocol: every stage maps a batch of :class:`ImageRecord` to the same batch.

A stage reads what earlier stages left on the records (faces, crops, outputs), adds its own part
and returns the list. Records whose ``error`` is set are never passed in (the pipeline filters
them). A stage that runs a network batches the faces of *all* records in the call together.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord


@runtime_checkable
class Stage(Protocol):
    """What the :class:`~faceswap_pipeline.pipeline.Pipeline` needs from a stage."""

    name: str

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]: ...


class ModelStage:
    """Base for stages that own ``nn.Module``\\ s: device placement and inference mode.

    Subclasses list their modules in ``self.modules`` and implement :meth:`process`.
    """

    name = "model"

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.modules: dict[str, torch.nn.Module] = {}

    def to(self, device: str | torch.device) -> ModelStage:
        """Move every module to ``device``; returns self."""
        self.device = torch.device(device)
        for m in self.modules.values():
            m.to(self.device)
        return self

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        with torch.inference_mode():
            return self.process(batch)

    def process(self, batch: list[ImageRecord]) -> list[ImageRecord]:
        raise NotImplementedError


class DetectorStage:
    """Base for detection stages: implement :meth:`detect` (and :meth:`detect_batch` to batch).

    Boxes are ``(x0, y0, x1, y1)`` source pixels in the HOG framing (other detectors calibrate
    their boxes to it), so a model's crop factors fit whichever detector found the face.

    Calling the object works two ways: ``det(image)`` with an ``(H, W, 3)`` uint8 RGB array
    returns ``list[Detection]`` (the public API), and ``det(batch)`` with a list of
    :class:`ImageRecord` is the stage protocol (sets ``rec.faces``).
    """

    name = "detect"

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one ``(H, W, 3)`` uint8 RGB image, highest score first."""
        raise NotImplementedError

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each of several images (override to batch the work)."""
        return [self.detect(im) for im in images]

    def __call__(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return self.detect(x)
        for rec, dets in zip(x, self.detect_batch([r.image for r in x])):
            rec.faces = [FaceRecord(detection=d) for d in dets]
        return x

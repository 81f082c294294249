"""The stage protocol: every stage maps a batch of :class:`ImageRecord` to the same batch.

A stage reads what earlier stages left on the records (faces, crops, outputs), adds its own part
and returns the list. Records whose ``error`` is set are never passed in (the pipeline filters
them). A stage that runs a network batches the faces of *all* records in the call together.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from faceswap_pipeline.types import Detection, ImageRecord


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

    def to(self, device: str | torch.device) -> "ModelStage":
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


class Detector(Protocol):
    """What a detection stage provides besides the stage protocol: ``detect(image) -> list[Detection]``.

    ``image`` is ``(H, W, 3)`` uint8 RGB; boxes are ``(x0, y0, x1, y1)`` source pixels in the
    HOG framing (cascade detectors calibrate their boxes to it), so crop factors fit any detector.
    """

    name: str

    def detect(self, image) -> list[Detection]: ...  # noqa: ANN001

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]: ...

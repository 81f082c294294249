"""The stage protocol: every stage maps a batch of :class:`ImageRecord` to the same batch.

A stage reads what earlier stages left on the records (faces, crops, outputs), adds its own part
and returns the list. Records whose ``error`` is set are never passed in (the pipeline filters
them). A stage that runs a network batches the faces of *all* records in the call together.

Optional parts of the protocol, used by :class:`~faceswap_pipeline.pipeline.Pipeline` when present:

* ``batched`` (bool, default True): False for a stage that works image by image anyway; the
  pipeline then calls it one image at a time, so each image's time is measured exactly.
* ``work(rec) -> float``: a batched stage's share of work for one image (default: its number of
  faces); the batch's time is split over the images in proportion to it.
* ``settings() -> dict``: everything about the stage that changes its output (options, a digest
  of the weights), JSON-able; recorded with the outputs of a folder run so that a re-run with
  other settings is noticed. Default: the stage's class and its plain public attributes.
* ``warmup()``: load lazily loaded parts and run once on a dummy input, so that one-off costs are
  paid before the first photo (and before a progress bar starts).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from faceswap_pipeline.types import Detection, FaceRecord, ImageRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of memory: CUDA's (or another device's) OOM, or a CPU ``MemoryError``."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def for_chunks(stage: Any, items: Sequence[T], fn: Callable[[list[T]], None]) -> None:
    """Call ``fn`` on consecutive chunks of ``stage.batch_size`` items, halving on out-of-memory.

    When ``fn`` runs out of memory (:func:`is_out_of_memory`) on a chunk of more than one item, the
    stage's ``batch_size`` is halved (for the rest of its life: the next photos start at the size
    that fit), a warning is logged and the same items are tried again, so no item is ever lost or
    skipped. A single item that does not fit raises the error. ``fn`` must make its changes only
    after its forward pass (a failed chunk leaves nothing half-done).
    """
    i = 0
    while i < len(items):
        chunk = list(items[i : i + max(1, int(stage.batch_size))])
        try:
            fn(chunk)
        except Exception as exc:
            if not is_out_of_memory(exc) or len(chunk) == 1:
                raise
            stage.batch_size = max(1, len(chunk) // 2)
            log.warning("%s: out of memory on a batch of %d faces; retrying with batch size %d",
                        getattr(stage, "name", type(stage).__name__), len(chunk), stage.batch_size)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        i += len(chunk)


@runtime_checkable
class Stage(Protocol):
    """What the :class:`~faceswap_pipeline.pipeline.Pipeline` needs from a stage."""

    name: str

    def __call__(self, batch: list[ImageRecord]) -> list[ImageRecord]: ...


def module_digest(module: torch.nn.Module) -> str:
    """A short sha256 of a module's state (parameter and buffer values): identifies its weights."""
    h = hashlib.sha256()
    for key, t in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


_PLAIN = (bool, int, float, str, type(None))


def default_settings(stage: Any) -> dict[str, Any]:
    """What a stage without its own ``settings()`` records: its class and plain public attributes."""
    out: dict[str, Any] = {"class": type(stage).__qualname__}
    for k, v in sorted(vars(stage).items()):
        if k.startswith("_") or k in ("device", "batch_size"):
            continue
        if isinstance(v, _PLAIN):
            out[k] = v
        elif isinstance(v, (tuple, list)) and all(isinstance(x, _PLAIN) for x in v):
            out[k] = list(v)
        elif isinstance(v, dict) and all(isinstance(x, str) and isinstance(y, _PLAIN) for x, y in v.items()):
            out[k] = dict(sorted(v.items()))
    return out


def stage_settings(stage: Any) -> dict[str, Any]:
    """``stage.settings()`` if it has one, else :func:`default_settings`."""
    fn = getattr(stage, "settings", None)
    return dict(fn()) if callable(fn) else default_settings(stage)


class ModelStage:
    """Base for stages that own ``nn.Module``\\ s: device placement and inference mode.

    Subclasses list their modules in ``self.modules`` and implement :meth:`process`.
    """

    name = "model"
    batched = True

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

    def settings(self) -> dict[str, Any]:
        """The stage's output-relevant options (:func:`default_settings`) plus a digest per module."""
        out = default_settings(self)
        out["models"] = {k: module_digest(m) for k, m in sorted(self.modules.items())}
        return out


class DetectorStage:
    """Base for detection stages: implement :meth:`detect` (and :meth:`detect_batch` to batch).

    Boxes are ``(x0, y0, x1, y1)`` source pixels in the HOG framing (other detectors calibrate
    their boxes to it), so a model's crop factors fit whichever detector found the face.

    Calling the object works two ways: ``det(image)`` with an ``(H, W, 3)`` uint8 RGB array
    returns ``list[Detection]`` (the public API), and ``det(batch)`` with a list of
    :class:`ImageRecord` is the stage protocol (sets ``rec.faces``).
    """

    name = "detect"
    batched = False

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

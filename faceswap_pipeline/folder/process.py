"""The process step of a folder run: ready-made ``process_batch`` callables.

A ``process_batch`` maps decoded files (:class:`~faceswap_pipeline.io.LoadedImage`) to one
:class:`ItemResult` (or the exception that image failed with) each. :class:`PipelineBatch` is the
one for a :class:`~faceswap_pipeline.pipeline.Pipeline` (the ``run`` and ``detect`` commands),
:class:`UpscaleBatch` the one for an image upscaler (``upscale``). Both are plain objects of
picklable parts (no closures), so a worker process can be handed one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceswap_pipeline.io import LoadedImage
from faceswap_pipeline.pipeline import Pipeline, PipelineError
from faceswap_pipeline.types import FaceRecord, ImageRecord


@dataclass
class ItemResult:
    """What ``process_batch`` returns for one image.

    Attributes:
        image: the output pixels to write, shape (H, W, 3) uint8 RGB (any input of
            :func:`~faceswap_pipeline.io.to_uint8_rgb` works; the size may differ from the
            input's, e.g. after upscaling). None means "output = input unchanged": the input
            file's bytes are copied when the output format is the input's (lossless, metadata
            intact), else the decoded input is re-encoded.
        info: JSON-able per-file data for the report (faces, boxes, scores, stage timings...).
            numpy scalars/arrays, tuples, paths and objects with ``to_dict()`` are converted;
            NaN/inf become null.
        process_s: seconds spent on this image, when ``process_batch`` measured it (reported
            as its ``process_s`` when it was processed in a batch of several); None: unknown.
    """

    image: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    process_s: float | None = None


ProcessBatch = Callable[[list[LoadedImage]], Sequence["ItemResult | BaseException"]]


def face_summary(face: FaceRecord) -> dict[str, Any]:
    """A swapped face in the report of ``run``: :meth:`FaceRecord.to_dict` (box, score, actions...)."""
    return face.to_dict()


def detection_summary(face: FaceRecord) -> dict[str, Any]:
    """A face in the report of ``detect``: its box and score, and the verifier's ``face_prob``."""
    d = face.detection.to_dict()
    if "face_prob" in face.attributes:
        d["face_prob"] = round(face.attributes["face_prob"], 4)
    return d


@dataclass
class PipelineBatch:
    """``process_batch`` of a pipeline: decoded files -> :class:`ImageRecord` -> the stages -> :class:`ItemResult`.

    Each result's ``info`` has ``faces`` (``describe_face`` of each), ``n_faces`` and
    ``stage_s`` (this image's seconds per stage, see :class:`~faceswap_pipeline.pipeline.Pipeline`);
    when several images were processed together it also has ``batch``: ``{"images": n, "faces": m,
    "stage_s": {stage: seconds for the whole batch}}``. An image the pipeline failed on gets a
    :class:`~faceswap_pipeline.pipeline.PipelineError` (the stage and the error); its batch-mates
    go on. ``image`` is None when no face was changed (the runner then copies the input file).
    """

    pipeline: Pipeline
    describe_face: Callable[[FaceRecord], dict[str, Any]] = face_summary

    def __call__(self, items: list[LoadedImage]) -> list[ItemResult | BaseException]:
        batch_s: dict[str, float] = {}
        recs = self.pipeline.process([ImageRecord(image=it.rgb, key=str(it.path)) for it in items], batch_timings=batch_s)
        return self.results(recs, batch_s)

    def results(self, recs: list[ImageRecord], batch_s: dict[str, float]) -> list[ItemResult | BaseException]:
        """The :class:`ItemResult` (or :class:`~faceswap_pipeline.pipeline.PipelineError`) of each
        processed record, in order; ``batch_s``: the batch's seconds per stage. Also used by the Ray
        engine, whose records passed the stages in two steps (:mod:`~faceswap_pipeline.folder.ray_engine`)."""
        batch = None
        if len(recs) > 1:
            batch = {"images": len(recs), "faces": sum(len(r.faces) for r in recs), "stage_s": _round(batch_s)}
        out: list[ItemResult | BaseException] = []
        for rec in recs:
            if rec.error:
                out.append(PipelineError(rec.error))
                continue
            info: dict[str, Any] = {"faces": [self.describe_face(f) for f in rec.faces], "n_faces": len(rec.faces),
                                    "stage_s": _round(rec.timings)}
            if batch is not None:
                info["batch"] = batch
            changed = rec.result is not None and any(f.output is not None for f in rec.faces)
            # image=None: nothing was swapped, the runner copies the input file losslessly
            out.append(ItemResult(image=rec.result if changed else None, info=info, process_s=sum(rec.timings.values())))
        return out


@dataclass
class UpscaleBatch:
    """``process_batch`` of an image upscaler (``up(rgb) -> rgb``): every image enlarged ``scale`` times."""

    upscaler: Callable[[np.ndarray], np.ndarray]
    scale: int

    def __call__(self, items: list[LoadedImage]) -> list[ItemResult | BaseException]:
        return [ItemResult(image=self.upscaler(it.rgb), info={"scale": self.scale}) for it in items]


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in d.items()}

"""The pipeline: an ordered list of stages run the same way over batches of images."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from faceswap_pipeline.stages.base import Stage
from faceswap_pipeline.types import FaceRecord, ImageRecord

if TYPE_CHECKING:
    from faceswap_pipeline.folder import FolderReport
    from faceswap_pipeline.io import LoadedImage

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """A stage failed on an image given to :meth:`Pipeline.__call__`."""


class Pipeline:
    """Runs stages in order over a batch of :class:`ImageRecord` with per-image error isolation.

    Every stage maps the list of (not yet failed) records to itself. When a stage raises for a
    batch, it is re-run image by image, so one bad image marks only itself failed (``rec.error``)
    and its neighbours go on. Stage time is recorded per image in ``rec.timings`` (a batched
    stage's time is split evenly over the images of the batch).

    Example:
        >>> pipe = Pipeline([HogDetector(), CropLetterbox(), Translator.from_pretrained("male2female"),
        ...                  FeatherBlend()])                                    # doctest: +SKIP
        >>> out, faces = pipe(photo)                                            # doctest: +SKIP
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        names = [getattr(s, "name", None) for s in stages]
        if any(n is None for n in names) or not all(callable(s) for s in stages):
            raise TypeError("every stage needs a `name` and must be callable on a list of ImageRecord")
        self.stages = list(stages)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(s) for s in self.stages)
        return f"Pipeline([\n  {inner}\n])"

    def process(self, records: list[ImageRecord]) -> list[ImageRecord]:
        """Run every stage over ``records`` (in place); returns them. Failed ones have ``error`` set."""
        for stage in self.stages:
            active = [r for r in records if r.error is None]
            if not active:
                break
            t0 = time.perf_counter()
            try:
                stage(active)
            except Exception as e:  # isolate the failing image(s)
                if len(active) == 1:
                    _fail(active[0], stage.name, e)
                else:
                    log.debug("stage %s failed on a batch of %d (%s); retrying one by one", stage.name, len(active), e)
                    for rec in active:
                        try:
                            stage([rec])
                        except Exception as e1:
                            _fail(rec, stage.name, e1)
            dt = (time.perf_counter() - t0) / len(active)
            for rec in active:
                rec.timings[stage.name] = rec.timings.get(stage.name, 0.0) + dt
        return records

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, list[FaceRecord]]:
        """Process one photo.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (greyscale, RGBA, uint16 or float [0, 1] arrays are
                converted; an alpha channel is ignored).

        Returns:
            ``(output, faces)``: ``(H, W, 3)`` uint8 RGB of the same size, and one
            :class:`FaceRecord` per detected face (``.box``, ``.score``, ``.actions``).

        Raises:
            PipelineError: a stage failed for this image.
        """
        from faceswap_pipeline.io import to_uint8_rgb

        rgb, _ = to_uint8_rgb(image)
        (rec,) = self.process([ImageRecord(image=rgb)])
        if rec.error:
            raise PipelineError(rec.error)
        return (rec.result if rec.result is not None else rec.image.copy()), rec.faces

    def process_loaded(self, items: list[LoadedImage]) -> list[Any]:
        """Folder-runner adapter: process decoded files, return an ``ItemResult`` or exception each."""
        from faceswap_pipeline.folder import ItemResult

        recs = self.process([ImageRecord(image=it.rgb, key=str(it.path)) for it in items])
        out: list[Any] = []
        for rec in recs:
            if rec.error:
                out.append(PipelineError(rec.error))
                continue
            info = {"faces": [f.to_dict() for f in rec.faces], "n_faces": len(rec.faces), "stage_s": _round(rec.timings)}
            changed = rec.result is not None and any(f.output is not None for f in rec.faces)
            # image=None: nothing was swapped, the runner copies the input file losslessly
            out.append(ItemResult(image=rec.result if changed else None, info=info))
        return out

    def run_folder(
        self,
        in_dir: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        batch_size: int = 8,
        overwrite: bool = False,
        report: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> FolderReport:
        """Process every image under ``in_dir`` into the same relative paths under ``out_dir``.

        Existing outputs are skipped unless ``overwrite`` (so a re-run resumes); unreadable
        files are reported and skipped; outputs are written atomically with the input's format,
        quality, EXIF and alpha where the format allows; inputs are never modified.

        Returns:
            The :class:`~faceswap_pipeline.folder.FolderReport` (also written as JSON to
            ``report`` when given); ``.exit_code`` is 1 if any file failed.
        """
        from faceswap_pipeline.folder import run_folder

        return run_folder(
            in_dir, out_dir, self.process_loaded, batch_size=batch_size, overwrite=overwrite, report_path=report, progress=progress
        )


def _fail(rec: ImageRecord, stage: str, e: Exception) -> None:
    rec.error = f"{stage}: {type(e).__name__}: {e}"
    log.warning("%s failed at stage %s: %s", rec.key or "image", stage, e)


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in d.items()}

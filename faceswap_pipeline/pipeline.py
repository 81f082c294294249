"""The pipeline: an ordered list of stages run the same way over batches of images."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from faceswap_pipeline.types import FaceRecord, ImageRecord

if TYPE_CHECKING:
    from faceswap_pipeline.folder import FolderReport
    from faceswap_pipeline.stages.base import Stage

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """A stage failed on an image given to :meth:`Pipeline.__call__`."""


class Pipeline:
    """Runs stages in order over a batch of :class:`ImageRecord` with per-image error isolation.

    Every stage maps the list of (not yet failed) records to itself. When a stage raises for a
    batch, it is re-run image by image, so one bad image marks only itself failed (``rec.error``)
    and its neighbours go on. A stage that has a ``stages`` list (the detector from
    :func:`~faceswap_pipeline.api.load_detector`: detect + verify, or another ``Pipeline``) is
    run as those stages.

    Stage time is recorded per image in ``rec.timings`` (seconds per stage name), and means what
    it says: stages that work image by image (``batched = False``: detection by HOG,
    verification, crop, blend...) are called one image at a time and timed exactly; a batched
    stage (the networks: translate, upscale, classify, the cascade detector) is timed for the
    batch, and the batch's time is split over its images in proportion to each image's share of
    the work (``stage.work(rec)``: its faces the stage processed, its pixels for the cascade), so
    a photo with no face gets 0 for the translation. ``process(..., batch_timings=d)`` also
    returns the batch's total per stage.

    Example:
        >>> pipe = Pipeline([HogDetector(), CropLetterbox(), Translator.from_pretrained("male2female"),
        ...                  FeatherBlend()])                                    # doctest: +SKIP
        >>> out, faces = pipe(photo)                                            # doctest: +SKIP
    """

    def __init__(self, stages: Sequence[Stage]) -> None:
        flat: list[Any] = []
        for s in stages:
            inner = getattr(s, "stages", None)
            flat.extend(inner if isinstance(inner, (list, tuple)) else [s])
        names = [getattr(s, "name", None) for s in flat]
        if any(n is None for n in names) or not all(callable(s) for s in flat):
            raise TypeError("every stage needs a `name` and must be callable on a list of ImageRecord")
        self.stages = flat

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(s) for s in self.stages)
        return f"Pipeline([\n  {inner}\n])"

    def settings(self) -> dict[str, Any]:
        """Everything that changes this pipeline's output, per stage (JSON-able).

        Each stage's ``settings()`` (options and a digest of its weights; see
        :mod:`faceswap_pipeline.stages.base`). A folder run records it with its outputs, and a
        later run into the same folder with other settings is refused instead of silently mixing
        outputs of both.
        """
        from faceswap_pipeline.stages.base import stage_settings

        return {"stages": [{"stage": s.name, **stage_settings(s)} for s in self.stages]}

    def warmup(self) -> None:
        """Load what the stages load lazily and run each network once on a dummy input.

        One-off costs (importing dlib, building the detector, first-call set-up of the networks)
        are paid here instead of inside the first photo; a folder run calls it before its progress
        bar starts.
        """
        for s in self.stages:
            fn = getattr(s, "warmup", None)
            if callable(fn):
                fn()

    def process(self, records: list[ImageRecord], batch_timings: dict[str, float] | None = None) -> list[ImageRecord]:
        """Run every stage over ``records`` (in place); returns them. Failed ones have ``error`` set.

        Args:
            records: the images.
            batch_timings: if given, filled with the seconds each stage took for the whole batch.
        """
        for stage in self.stages:
            active = [r for r in records if r.error is None]
            if not active:
                break
            t_batch = time.perf_counter()
            if getattr(stage, "batched", True) and len(active) > 1:
                self._run_batched(stage, active)
            else:
                for rec in active:
                    t0 = time.perf_counter()
                    try:
                        stage([rec])
                    except Exception as e:  # only this image fails
                        _fail(rec, stage.name, e)
                    rec.timings[stage.name] = rec.timings.get(stage.name, 0.0) + time.perf_counter() - t0
            if batch_timings is not None:
                batch_timings[stage.name] = batch_timings.get(stage.name, 0.0) + time.perf_counter() - t_batch
        return records

    @staticmethod
    def _run_batched(stage: Any, active: list[ImageRecord]) -> None:
        """Run a batched stage on all images at once (one by one if that fails); split its time by work."""
        t0 = time.perf_counter()
        try:
            stage(active)
        except Exception as e:  # isolate the failing image(s)
            log.debug("stage %s failed on a batch of %d (%s); retrying one by one", stage.name, len(active), e)
            for rec in active:
                t1 = time.perf_counter()
                try:
                    stage([rec])
                except Exception as e1:
                    _fail(rec, stage.name, e1)
                rec.timings[stage.name] = rec.timings.get(stage.name, 0.0) + time.perf_counter() - t1
            return
        dt = time.perf_counter() - t0
        work_fn = getattr(stage, "work", None)
        work = [float(work_fn(r)) if callable(work_fn) else float(len(r.faces)) for r in active]
        total = sum(work)
        for rec, w in zip(active, work):
            share = dt * w / total if total > 0 else dt / len(active)
            rec.timings[stage.name] = rec.timings.get(stage.name, 0.0) + share

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

    def run_folder(
        self,
        in_dir: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        batch_size: int | None = None,
        overwrite: bool = False,
        report: str | os.PathLike[str] | None = None,
        progress: bool | Any = True,
    ) -> FolderReport:
        """Process every image under ``in_dir`` into the same relative paths under ``out_dir``.

        Shorthand for ``FolderRun.for_pipeline(self, in_dir, out_dir, ...).run()`` (see
        :class:`~faceswap_pipeline.folder.FolderRun`).

        Existing outputs are skipped unless ``overwrite`` (so a re-run resumes); unreadable
        files are reported and skipped; outputs are written atomically with the input's format,
        bit depth, greyscale, quality, EXIF and alpha where the format allows; inputs are never
        modified. The pipeline's :meth:`settings` are recorded in the output folder: a re-run
        with other settings into a folder that has outputs raises
        :class:`~faceswap_pipeline.folder.SettingsMismatchError` (use ``overwrite=True`` to redo
        them). Models are warmed up (:meth:`warmup`) before the progress bar starts.

        Args:
            in_dir: input folder (or one image file).
            out_dir: output folder (not the input folder, nor one containing it).
            batch_size: images processed together (their faces share network passes); None: 8
                when a stage runs on a GPU, else 1 (on a CPU batching gains little, and each
                photo then finishes, moves the progress bar and is timed on its own).
            overwrite: redo inputs whose output exists.
            report: where to write the JSON report.
            progress: progress bar on stderr when it is a terminal (or a text stream to draw on).

        Returns:
            The :class:`~faceswap_pipeline.folder.FolderReport` (also written as JSON to
            ``report`` when given); ``.exit_code`` is 1 if any file failed.
        """
        from faceswap_pipeline.folder import FolderRun

        return FolderRun.for_pipeline(self, in_dir, out_dir, batch_size=batch_size, overwrite=overwrite,
                                      report_path=report, progress=progress).run()


def _fail(rec: ImageRecord, stage: str, e: Exception) -> None:
    rec.error = f"{stage}: {type(e).__name__}: {e}"
    log.warning("%s failed at stage %s: %s", rec.key or "image", stage, e)

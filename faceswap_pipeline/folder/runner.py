"""The folder runner: :class:`FolderRun` walks, reads ahead, processes in batches, writes, reports.

One image passes the steps once, in order::

    plan (walk, resume)  ->  ReadAhead (decode)  ->  process_batch (the stages)  ->  OutputWriter (encode)
                                                                            \\->  the report entry

:mod:`~faceswap_pipeline.folder.plan`, :mod:`~faceswap_pipeline.folder.readahead`,
:mod:`~faceswap_pipeline.folder.process`, :mod:`~faceswap_pipeline.folder.writer` and
:mod:`~faceswap_pipeline.folder.report` hold the steps; this module only joins them. The decode
and encode steps are top-level functions of picklable arguments and ``process_batch`` a plain
object, so each can move to worker processes without changing the others.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceswap_pipeline.folder.paths import check_paths, is_within
from faceswap_pipeline.folder.plan import Plan, prepare_run
from faceswap_pipeline.folder.process import ItemResult, PipelineBatch, ProcessBatch, face_summary
from faceswap_pipeline.folder.progress import Progress, should_show
from faceswap_pipeline.folder.readahead import ReadAhead
from faceswap_pipeline.folder.report import FolderReport, ReportWriter, to_jsonable, utc_now
from faceswap_pipeline.folder.settings import write_marker
from faceswap_pipeline.folder.writer import OutputWriter, Written
from faceswap_pipeline.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, LoadedImage, PathLike, format_for_suffix

if TYPE_CHECKING:
    from faceswap_pipeline.pipeline import Pipeline
    from faceswap_pipeline.types import FaceRecord

logger = logging.getLogger("faceswap_pipeline.folder")  # the name users see on the runner's messages

_Batch = list[tuple[int, LoadedImage, "Path | None"]]


@dataclass(eq=False)
class FolderRun:
    """Process every image of a folder tree with ``process_batch``; see :mod:`faceswap_pipeline.folder`.

    The arguments are checked when the run is made (bad paths and options raise before any
    work); :meth:`run` does the work and returns the :class:`~faceswap_pipeline.folder.report.FolderReport`.

    Args:
        in_dir: input folder (walked with :func:`~faceswap_pipeline.io.iter_images`), or a single
            image file. Input files are only ever opened for reading.
        out_dir: output folder; ``out_dir / <path relative to in_dir>`` is written for each input
            (suffix replaced by ``output_suffix`` if given). May be inside ``in_dir`` (it is then
            left out of the walk, and so is every folder holding the outputs of an earlier run);
            must not be ``in_dir`` itself or contain it. May be None when ``write_outputs`` is
            False.
        process_batch: ``(list[LoadedImage]) -> list[ItemResult | Exception]``, one entry per
            item, in order. If it raises, the batch is retried one image at a time.
        batch_size: maximum images per ``process_batch`` call.
        overwrite: redo inputs that are already done (see Resume) instead of skipping them.
        report_path: where to write the JSON report (atomically, also during the run); None for
            no report file.
        output_suffix: e.g. ``".png"`` to write every output as PNG; None keeps each input's
            suffix (and so its format).
        write_outputs: False for runs that only report (detection): nothing is written but the
            report, and resume reads the previous report.
        progress: show a tqdm bar (one step per image) on stderr when it is a terminal; False:
            none; a text stream: draw it there.
        extensions: input suffixes to pick up (anchored, case-insensitive).
        recursive: walk sub-folders.
        quality: JPEG/WebP output quality; None keeps the input's (see
            :func:`~faceswap_pipeline.io.write_image`).
        num_readers: background threads decoding images ahead of processing.
        max_pixels: per-image pixel limit of :func:`~faceswap_pipeline.io.read_image`.
        max_batch_pixels: a batch is closed early once its images hold this many pixels, and
            read-ahead pauses while decoded-but-unprocessed images hold this many, which bounds
            memory with huge images (about ``2 * max_batch_pixels * 3`` bytes plus one image per
            reader).
        report_every_s: minimum seconds between incremental report writes (stretched for huge
            reports so that writing them takes at most ~5% of the run).
        background_writes: encode and write outputs in a background thread (at most
            ``batch_size`` waiting), overlapping them with the next batch's processing.
        settings: JSON-able description of what ``process_batch`` does (options, weights); recorded
            in the output folder and the report, and compared on re-runs (see Settings).
        on_start: called once, after the walk and all checks and before the progress bar starts,
            when there is something to process (e.g. to warm up models).
        workers: 1 (default): decode in ``num_readers`` threads and encode in one, all in this
            process. More: decode and encode in a pool of that many spawned worker processes
            (:mod:`~faceswap_pipeline.folder.workers`), at most ``workers`` of each at a time,
            while this process runs ``process_batch``; the same bounds, order, outputs and
            report. Not recorded in the settings: a run may resume with another count.

    Raises:
        FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError:
            bad paths (see :func:`~faceswap_pipeline.folder.paths.check_paths`) or arguments
            (unknown ``output_suffix``, ``batch_size < 1``).
    """

    in_dir: PathLike
    out_dir: PathLike | None
    process_batch: ProcessBatch
    _: KW_ONLY
    batch_size: int = 8
    overwrite: bool = False
    report_path: PathLike | None = None
    output_suffix: str | None = None
    write_outputs: bool = True
    progress: bool | Any = True
    extensions: Iterable[str] = IMAGE_EXTENSIONS
    recursive: bool = True
    quality: int | None = None
    num_readers: int = 2
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_batch_pixels: int = 100_000_000
    report_every_s: float = 5.0
    background_writes: bool = True
    settings: dict[str, Any] | None = None
    on_start: Callable[[], None] | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {self.workers!r}")
        check_paths(self.in_dir, self.out_dir, write_outputs=self.write_outputs, report_path=self.report_path)
        self.in_path = Path(self.in_dir)
        self.out_path = Path(self.out_dir) if self.out_dir is not None else None
        self.report_file = Path(self.report_path) if self.report_path is not None else None
        self.exclude: Path | None = None  # an output folder inside the input folder
        if self.out_path is not None:
            root = (self.in_path.parent if self.in_path.is_file() else self.in_path).resolve()
            out_res = self.out_path.resolve()
            if is_within(out_res, root) and out_res != root:
                self.exclude = out_res
                if not self.in_path.is_file() and self.write_outputs:
                    logger.warning(
                        "the output folder %s is inside the input folder %s: it is left out of the walk (and so is any "
                        "folder holding the outputs of an earlier run)", self.out_path, self.in_path)
        if self.output_suffix is not None:
            if not self.output_suffix.startswith("."):
                self.output_suffix = "." + self.output_suffix
            if self.write_outputs:
                format_for_suffix("x" + self.output_suffix)  # validates early

    @classmethod
    def for_pipeline(
        cls,
        pipeline: Pipeline,
        in_dir: PathLike,
        out_dir: PathLike | None,
        *,
        batch_size: int | None = None,
        settings: dict[str, Any] | None = None,
        describe_face: Callable[[FaceRecord], dict[str, Any]] = face_summary,
        **options: Any,
    ) -> FolderRun:
        """A run of ``pipeline`` over a folder (:class:`~faceswap_pipeline.folder.process.PipelineBatch`).

        Args:
            batch_size: images processed together (their faces share network passes); None: 8
                when a stage runs on a GPU, else 1 (on a CPU batching gains little, and each
                photo then finishes, moves the progress bar and is timed on its own).
            settings: what is recorded with the results; None: ``{"command": "run",
                **pipeline.settings()}``.
            describe_face: a face's entry in the report (default: :meth:`FaceRecord.to_dict`).
            **options: the other arguments of :class:`FolderRun`. The models are warmed up
                (:meth:`Pipeline.warmup`) before the progress bar starts.
        """
        if batch_size is None:
            on_gpu = any(getattr(getattr(s, "device", None), "type", None) == "cuda" for s in pipeline.stages)
            batch_size = 8 if on_gpu else 1
        if settings is None:
            settings = {"command": "run", **pipeline.settings()}
        return cls(in_dir, out_dir, PipelineBatch(pipeline, describe_face), batch_size=batch_size,
                   settings=settings, on_start=pipeline.warmup, **options)

    # ------------------------------------------------------------------------------------------

    def run(self) -> FolderReport:
        """Process the folder; returns the report (``report.exit_code`` is 1 if any input failed).

        Raises:
            SettingsMismatchError: the settings differ from those of the results already there.
        """
        t_start = time.perf_counter()
        plan = prepare_run(
            self.in_path, self.out_path, write_outputs=self.write_outputs, overwrite=self.overwrite,
            report_file=self.report_file, settings=self.settings, output_suffix=self.output_suffix,
            extensions=self.extensions, recursive=self.recursive, exclude=self.exclude,
        )
        report = self._report = plan.report
        if plan.jobs and self.on_start is not None:
            self.on_start()
        total = len(report.items)
        self._bar = Progress(total, should_show(self.progress), None if isinstance(self.progress, bool) else self.progress)
        self._bar.update(total - len(plan.jobs))
        self._counts = collections.Counter(it.status for it in report.items)
        self._saver = ReportWriter(report, self.report_file, self.report_every_s, t_start)
        pool = None
        if self.workers > 1 and plan.jobs:
            from faceswap_pipeline.folder.workers import read_in, worker_pool, write_in

            pool = worker_pool(self.workers)
            num_readers = self.workers
            reader_kw: dict[str, Any] = {"read": functools.partial(read_in, pool)}
            writer_kw: dict[str, Any] = {"write": functools.partial(write_in, pool), "threads": self.workers,
                                         "background": self.write_outputs,
                                         "max_waiting": max(self.batch_size, self.workers)}
        else:
            num_readers = self.num_readers
            reader_kw = {}
            writer_kw = {"background": self.background_writes and self.write_outputs, "max_waiting": self.batch_size}
        self._writer = OutputWriter(self.quality, self._written, **writer_kw)
        self._n_batches = 0
        self._saver.save(force=True)  # a valid report (inputs listed, "pending") exists from the start
        reader = ReadAhead(
            plan.jobs,
            num_readers=num_readers,
            max_pixels=self.max_pixels,
            pixel_budget=2 * self.max_batch_pixels,
            max_queued=max(1, self.batch_size) + max(1, num_readers),
            **reader_kw,
        )
        interrupted = True
        try:
            self._process_all(reader)
            self._writer.drain(0)
            interrupted = False
        finally:
            reader.close()
            self._writer.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            self._bar.close()
            self._finish(plan, interrupted)
        logger.info("folder run done: %d ok, %d skipped, %d failed in %.1f s",
                    report.n_ok, report.n_skipped, report.n_failed, report.elapsed_s)
        return report

    def _process_all(self, reader: ReadAhead) -> None:
        """Take the decoded inputs in order and process them in batches of ``batch_size`` images
        (closed early at ``max_batch_pixels``, or when nothing more is decoded)."""
        batch: _Batch = []
        batch_pixels = 0

        def flush() -> None:
            nonlocal batch, batch_pixels
            self._process(batch)
            reader.release(batch_pixels)
            batch, batch_pixels = [], 0

        while True:
            got = reader.next()
            if got is None:  # nothing decoded or decoding: process what we hold, which frees budget
                if batch:
                    flush()
                    continue
                if reader.exhausted:
                    return
                raise RuntimeError("read-ahead stalled")  # pragma: no cover - would be a bug
            self._report.items[got.index].timings["read_s"] = got.seconds
            if not isinstance(got.image, LoadedImage):
                self._done(got.index, "error", got.image)
                self._saver.save()
                continue
            npx = got.image.rgb.shape[0] * got.image.rgb.shape[1]
            if batch and batch_pixels + npx > self.max_batch_pixels:
                flush()
            batch.append((got.index, got.image, got.output))
            batch_pixels += npx
            del got
            if len(batch) >= self.batch_size or reader.exhausted:
                flush()

    def _process(self, batch: _Batch) -> None:
        """Run ``process_batch`` on one batch (one image at a time if it raises) and hand each result on."""
        items = [b[1] for b in batch]
        t0 = time.perf_counter()
        results: list[Any]
        try:
            results = list(self.process_batch(items))
            if len(results) != len(items):
                raise RuntimeError(f"process_batch returned {len(results)} results for {len(items)} images")
        except Exception as exc:  # noqa: BLE001
            if len(items) > 1:
                logger.info("batch of %d failed (%s); retrying one by one", len(items), exc)
                for one in batch:
                    self._process([one])
                return
            results = [exc]
        elapsed = time.perf_counter() - t0
        self._n_batches += 1
        for (idx, loaded, out_file), res in zip(batch, results):
            entry = self._report.items[idx]
            own = res.process_s if isinstance(res, ItemResult) else None
            if len(items) == 1:
                entry.timings["process_s"] = elapsed
            else:
                entry.timings["process_s"] = float(own) if own is not None else elapsed / len(items)
                entry.batch = {"index": self._n_batches, "images": len(items), "process_s": round(elapsed, 6)}
            entry.info = {"image": loaded.summary()}
            if isinstance(res, BaseException):
                self._done(idx, "error", res)
            elif isinstance(res, ItemResult):
                try:
                    entry.info.update(to_jsonable(dict(res.info)))
                except Exception as exc:  # noqa: BLE001 - a bad info dict fails this item only
                    self._done(idx, "error", exc)
                    continue
                if not self.write_outputs or out_file is None:
                    entry.output = None
                    self._done(idx, "ok")
                else:
                    self._writer.submit(idx, loaded, out_file, res.image)
            else:
                self._done(idx, "error", TypeError(f"process_batch returned {type(res).__name__}, not ItemResult"))
        self._saver.save()

    def _written(self, idx: int, w: Written) -> None:
        entry = self._report.items[idx]
        entry.timings["write_s"] = w.seconds
        if w.written is not None:
            entry.info["output_image"] = w.written
        self._done(idx, "ok" if w.error is None else "error", w.error)

    def _done(self, idx: int, status: str, error: BaseException | None = None) -> None:
        entry = self._report.items[idx]
        if error is not None:
            entry.fail(error)
        else:
            entry.status = status
        self._counts[status] += 1
        self._bar.update(1, ok=self._counts["ok"], err=self._counts["error"])

    def _finish(self, plan: Plan, interrupted: bool) -> None:
        report = self._report
        report.complete = not interrupted
        report.finished = utc_now() if not interrupted else None
        self._saver.save(force=True)
        if report.complete and report.n_failed == 0 and plan.stale_from is not None and self.out_path is not None:
            with contextlib.suppress(OSError):
                write_marker(self.out_path, plan.record, None)  # no stale output is left


def run_folder(
    in_dir: PathLike,
    out_dir: PathLike | None,
    process_batch: ProcessBatch,
    **options: Any,
) -> FolderReport:
    """``FolderRun(in_dir, out_dir, process_batch, **options).run()``: see :class:`FolderRun`."""
    return FolderRun(in_dir, out_dir, process_batch, **options).run()

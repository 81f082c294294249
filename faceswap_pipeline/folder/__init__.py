"""The folder runner shared by the ``run``, ``detect`` and ``upscale`` subcommands.

:class:`FolderRun` walks an input folder, reads images in background threads, hands batches of
successfully read images to a ``process_batch``, writes the results (in a background thread too)
into a mirror of the input tree and keeps a JSON report of every input. ``run_folder(...)`` is
``FolderRun(...).run()``; ``FolderRun.for_pipeline(pipeline, ...)`` runs a
:class:`~faceswap_pipeline.pipeline.Pipeline` (:class:`PipelineBatch`).

Modules, one per step: :mod:`~faceswap_pipeline.folder.plan` (walk, resume, settings check),
:mod:`~faceswap_pipeline.folder.readahead` (decode), :mod:`~faceswap_pipeline.folder.process`
(``process_batch`` for pipelines and upscalers), :mod:`~faceswap_pipeline.folder.writer`
(encode), :mod:`~faceswap_pipeline.folder.report` (the JSON report),
:mod:`~faceswap_pipeline.folder.settings` (the settings record), :mod:`~faceswap_pipeline.folder.paths`
(path checks), :mod:`~faceswap_pipeline.folder.progress` (the bar) and
:mod:`~faceswap_pipeline.folder.runner`, which joins them. :mod:`~faceswap_pipeline.folder.workers`
moves decode and encode to worker processes (``workers=N``); :mod:`~faceswap_pipeline.folder.ray_engine`
runs a pipeline's folder run on Ray Data (``run --engine ray``) with the same outputs and report.

``process_batch`` contract::

    def process_batch(items: list[LoadedImage]) -> list[ItemResult | Exception]: ...

It gets a non-empty list of :class:`~faceswap_pipeline.io.LoadedImage` (``item.rgb`` is (H, W, 3)
uint8 RGB, upright) and returns one entry per item, in order: an :class:`ItemResult` or the
exception that item failed with (that item is reported as an error, its neighbours are not
affected). If it *raises*, the batch is retried one image at a time, so a single bad image cannot
fail its batch-mates.

Resume (the default; ``overwrite=True`` redoes everything):

* ``write_outputs=True``: an input is done, and reported ``"skipped"``, when its output file exists.
  Outputs are written atomically, so an existing output is always complete (an interrupted write
  leaves only a hidden ``.<name>.<random>.tmp`` file, never a partial output).
* ``write_outputs=False`` (detect-style runs, nothing written but the report): an input is done
  when the existing report at ``report_path`` lists it (by path relative to the input folder) with
  status ``"ok"`` or ``"skipped"`` *and* the same file size and modification time. Without a
  ``report_path`` nothing is skipped.
* A skipped input keeps the ``info`` recorded for it in the previous report, when there is one.

Settings (``settings=``, e.g. :meth:`Pipeline.settings() <faceswap_pipeline.pipeline.Pipeline.settings>`):
what the outputs are made with is recorded in the output folder (:data:`~faceswap_pipeline.io.OUTPUT_MARKER`,
``.faceswap-pipeline.json``) and in the report. A re-run whose settings differ from the recorded
ones, into a folder (or report) that already has results it would skip, raises
:class:`SettingsMismatchError` before any work: skipping would silently keep outputs of the other
setting. With ``overwrite=True`` everything is redone and the new settings recorded; if such a run
is interrupted, the marker remembers when it started, and a resumed run redoes every output older
than that. Folders that have a marker are never walked as inputs, so an output folder may sit
inside the input folder (it is left out of the walk, and so are earlier output folders there).

The report (JSON, written atomically every ``report_every_s`` seconds, after the last image, and
when the run is interrupted, so there is always a valid file) is::

    {"version": 1, "complete": true, "input_dir": "...", "output_dir": "...",
     "started": "2026-...Z", "finished": "2026-...Z", "settings": {...} or null,
     "summary": {"total": 12, "ok": 10, "skipped": 1, "error": 1, "pending": 0,
                 "elapsed_s": 3.2, "images_per_s": 3.4},
     "items": [{"input": "sub/a.jpg", "output": "sub/a.jpg", "status": "ok", "error": null,
                "info": {...}, "timings": {"read_s": 0.01, "process_s": 0.2, "write_s": 0.02},
                "size": 12345, "mtime_ns": 1700000000000000000}, ...]}

``input``/``output`` are relative to ``input_dir``/``output_dir`` (``output`` is null when nothing
was written). ``status`` is ``"ok"``, ``"skipped"``, ``"error"`` or, in a report of an interrupted
run, ``"pending"``. ``read_s`` and ``write_s`` are this file's own. ``process_s`` is this image's
processing time: exact when it was processed alone (a batch of one); in a batch of several, the
time ``process_batch`` measured for it (``ItemResult.process_s``, e.g. the pipeline's per-image
stage times) or, if it gives none, the batch's time divided by its images. Items of a batch of
several also have ``"batch": {"index": k, "images": n, "process_s": <the whole batch>}``.
``info["image"]`` describes the input (size, format, mode, bits...), ``info["output_image"]`` what
was written (``format``, ``mode``, ``bits``; ``copy`` when the input file was copied unchanged).
"""

from __future__ import annotations

from faceswap_pipeline.folder.paths import check_paths
from faceswap_pipeline.folder.process import (
    ItemResult,
    PipelineBatch,
    ProcessBatch,
    UpscaleBatch,
    detection_summary,
    face_summary,
)
from faceswap_pipeline.folder.report import REPORT_VERSION, STATUSES, FileReport, FolderReport, load_report, to_jsonable
from faceswap_pipeline.folder.runner import FolderRun, run_folder
from faceswap_pipeline.folder.settings import SettingsMismatchError, read_marker, settings_diff

__all__ = [
    "REPORT_VERSION", "STATUSES", "FileReport", "FolderReport", "FolderRun", "ItemResult", "PipelineBatch",
    "ProcessBatch", "SettingsMismatchError", "UpscaleBatch", "check_paths", "detection_summary", "face_summary",
    "load_report", "read_marker", "run_folder", "settings_diff", "to_jsonable",
]

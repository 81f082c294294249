"""Before a folder run processes anything: the walk, and per input whether it is done already.

:func:`prepare_run` lists the inputs (a :class:`~faceswap_pipeline.folder.report.FileReport`
each), decides which are skipped (resume) and which are to do (the :class:`Job` list), refuses a
re-run with other settings into results it would skip, and records the settings in the output
folder before anything is written. The rules are in :mod:`faceswap_pipeline.folder`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceswap_pipeline.folder.readahead import Job
from faceswap_pipeline.folder.report import FileReport, FolderReport, load_report, to_jsonable, utc_now
from faceswap_pipeline.folder.settings import (
    SettingsMismatchError,
    read_marker,
    same_settings,
    settings_diff,
    write_marker,
)
from faceswap_pipeline.io import OUTPUT_MARKER, iter_images

logger = logging.getLogger("faceswap_pipeline.folder")  # the name users see on the runner's messages


@dataclass
class Plan:
    """What :func:`prepare_run` decided.

    Attributes:
        report: every input, those already done marked ``"skipped"``, the others ``"pending"``
            (or ``"error"`` when their output path is unusable).
        jobs: the inputs to process, in walk order.
        record: the settings recorded with the results (None: unknown, because results of
            unknown settings were kept).
        stale_from: outputs not newer than this (ns) are stale until rewritten (an ``--overwrite``
            run, or a resumed interrupted one); None when none are.
    """

    report: FolderReport
    jobs: list[Job]
    record: dict[str, Any] | None
    stale_from: int | None


def prepare_run(
    in_path: Path,
    out_path: Path | None,
    *,
    write_outputs: bool,
    overwrite: bool,
    report_file: Path | None,
    settings: dict[str, Any] | None,
    output_suffix: str | None,
    extensions: Iterable[str],
    recursive: bool,
    exclude: Path | None,
) -> Plan:
    """Walk ``in_path``, decide what is done, and record the settings (see the module docstring).

    Raises:
        SettingsMismatchError: ``settings`` differ from those of results that would be skipped.
    """
    single_file = in_path.is_file()
    root = in_path.parent if single_file else in_path
    files = [in_path] if single_file else iter_images(root, extensions, recursive=recursive, exclude=exclude)
    if not files:
        logger.warning("no images with suffixes %s found in %s", list(extensions), in_path)

    report = FolderReport(input_dir=in_path, output_dir=out_path, started=utc_now(),
                          settings=None if settings is None else to_jsonable(settings))
    previous = load_report(report_file) if report_file is not None else None
    prev_items: dict[str, dict[str, Any]] = {}
    if previous is not None and previous.get("input_dir") not in (None, str(in_path.resolve())):
        logger.warning(
            "report %s is for input %s, not %s: not used for resume", report_file, previous.get("input_dir"), in_path
        )
        previous = None
    if previous is not None:
        prev_items = {str(e.get("input")): e for e in previous["items"] if isinstance(e, dict)}

    # What the results already there were made with: the output folder's marker (outputs), or
    # the previous report (report-only runs).
    marker = read_marker(out_path) if write_outputs and out_path is not None and out_path.is_dir() else None
    recorded: Any = None
    where = ""
    if write_outputs and marker is not None:
        recorded, where = marker.get("settings"), f"output folder {str(out_path)!r}"
    elif not write_outputs and previous is not None:
        recorded, where = previous.get("settings"), f"report {str(report_file)!r}"
    redo_before_ns = None
    if marker is not None and isinstance(marker.get("redo_before_ns"), int) and same_settings(recorded, settings):
        redo_before_ns = int(marker["redo_before_ns"])  # an --overwrite run was interrupted: older outputs are stale
    mismatch = settings is not None and recorded is not None and not same_settings(recorded, settings)
    unknown_skipped = 0

    input_set = {p.resolve() for p in files}
    out_owner: dict[Path, str] = {}
    jobs: list[Job] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        entry = FileReport(input=rel)
        with contextlib.suppress(OSError):
            st = path.stat()
            entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
        report.items.append(entry)
        idx = len(report.items) - 1
        out_file: Path | None = None
        if write_outputs and out_path is not None:
            rel_out = Path(rel) if output_suffix is None else Path(rel).with_suffix(output_suffix)
            out_file = out_path / rel_out
            entry.output = rel_out.as_posix()
            key = out_file.resolve()
            if key in input_set:
                entry.status, entry.output = "error", None
                entry.error = f"ValueError: output path {str(out_file)!r} is an input file"
                logger.warning("%s: %s", rel, entry.error)
                continue
            if key in out_owner:
                entry.status, entry.output = "error", None
                entry.error = f"ValueError: output path {rel_out.as_posix()!r} is also the output of {out_owner[key]!r}"
                logger.warning("%s: %s", rel, entry.error)
                continue
            out_owner[key] = rel
        prev = prev_items.get(rel)
        if not overwrite:
            done = False
            if write_outputs:
                if out_file is not None:
                    with contextlib.suppress(OSError):  # no output file: not done
                        mtime = out_file.stat().st_mtime_ns
                        done = redo_before_ns is None or mtime > redo_before_ns
            elif prev is not None:
                done = (
                    prev.get("status") in ("ok", "skipped")
                    and prev.get("size") == entry.size
                    and prev.get("mtime_ns") == entry.mtime_ns
                )
            if done:
                if mismatch:
                    raise SettingsMismatchError(
                        f"{where} holds results made with other settings ({settings_diff(recorded, settings)}). "
                        "A re-run skips what is already done, so the two settings would be mixed. Re-run with "
                        "overwrite (--overwrite) to redo everything with the new settings, or choose another "
                        f"{'output folder' if write_outputs else 'report file'}."
                    )
                if settings is not None and recorded is None:
                    unknown_skipped += 1
                entry.status = "skipped"
                if prev is not None and isinstance(prev.get("info"), dict):
                    entry.info = prev["info"]
                continue
        jobs.append(Job(idx, path, out_file))
    if unknown_skipped:
        logger.warning(
            "%s has %d result(s) with no record of the settings they were made with: they are kept as they are "
            "(use --overwrite to redo them with these settings)",
            where or (f"output folder {str(out_path)!r}" if write_outputs else f"report {str(report_file)!r}"),
            unknown_skipped)
    # results of unknown settings stay: the folder/report then records no settings (unknown) until an --overwrite run
    record = None if unknown_skipped else settings
    report.settings = None if record is None else to_jsonable(record)

    stale_from = None
    if write_outputs and out_path is not None and files:
        # Record the settings before writing anything. During an --overwrite run every output not
        # newer than its start is stale until rewritten; "its start" is the marker's own mtime,
        # from the file system's clock like the outputs' (an output written in the same clock
        # tick counts as stale: redone once more, never wrongly kept).
        if overwrite and jobs:
            write_marker(out_path, settings, None)
            stale_from = (out_path / OUTPUT_MARKER).stat().st_mtime_ns
            write_marker(out_path, settings, stale_from)
        else:
            stale_from = redo_before_ns
            if marker is None or not same_settings(recorded, record) or marker.get("redo_before_ns") != stale_from:
                write_marker(out_path, record, stale_from)
    return Plan(report, jobs, record, stale_from)

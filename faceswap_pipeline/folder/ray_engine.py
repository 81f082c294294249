"""The Ray Data engine of a folder run (``run --engine ray``, :func:`run_folder_ray`).

The same job as :class:`~faceswap_pipeline.folder.FolderRun` with a pipeline, spread over a Ray
cluster (or a local Ray instance) with `Ray Data <https://docs.ray.io/en/latest/data/data.html>`_::

    driver: walk, resume, settings check (prepare_run, as the local runner)
      -> ray.data.from_items(paths to do)
      -> map_batches(decode_detect)       CPU tasks: read_file + the pipeline's head stages
                                           (detect, verify, second pass, face choice, crop)
      -> map_batches(NetworkActor)        actor pool, one pipeline per actor (num_gpus=1 each when
                                           the cluster has GPUs): landmarks, attributes, translate,
                                           upscale, blend
      -> map_batches(encode_write)        CPU tasks: write_output (atomic), one shard report per batch
    driver: merge the shard reports into the one report (by input index), marker, summary

Nothing here re-implements a step: the walk and resume are :func:`~faceswap_pipeline.folder.plan.prepare_run`,
decode is :func:`~faceswap_pipeline.folder.readahead.read_file`, the stages are the pipeline's
own (:func:`split_pipeline` cuts it in two), the report entries are built as
:class:`~faceswap_pipeline.folder.FolderRun` builds them (:meth:`PipelineBatch.results
<faceswap_pipeline.folder.process.PipelineBatch.results>`), and encode is
:func:`~faceswap_pipeline.folder.writer.write_output`. So the outputs, their names and formats,
the settings record and the report are the local runner's (tested byte for byte); only timings
differ, and ``batch.index`` numbers the actors' batches in input order.

Idempotent: a task skips an input whose output exists and is not stale (the resume rule of the
local runner), both before decoding it and again before writing it, so a retried task (Ray
re-runs failed tasks and restarts dead actors) or a second run into the same folder never
rewrites a finished output; such an input is reported ``"skipped"``. Outputs are written
atomically (a hidden temporary file renamed into place), so an existing output is complete.

Bounded retries: a task (or an actor's batch) whose worker dies is re-run ``task_retries`` times
(2; Ray Data's own default retries forever, so an input that crashes its decoder would loop).
A block whose task still fails is dropped, not the job (``DataContext.max_errored_blocks``); its
inputs then run again one per task, and an input that fails alone as well is reported as an
error, with the job completing (exit code 1) as for any failed input.

Every worker builds its own pipeline from a :class:`PipelineSpec` (the arguments of
:func:`~faceswap_pipeline.api.load_pipeline`): the CPU tasks only its head on ``"cpu"``
(``head_only=True``: the detectors and the crop, no generator or SR net; cached per worker
process), each actor the whole pipeline on its device (it runs the tail). On a multi-node cluster every node needs this package (and
the weights folder, if one is given) installed, and the input and output folders on a shared file
system at the same path.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import socket
import time
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceswap_pipeline.folder.plan import prepare_run
from faceswap_pipeline.folder.process import PipelineBatch, face_summary
from faceswap_pipeline.folder.progress import Progress, should_show
from faceswap_pipeline.folder.readahead import read_file
from faceswap_pipeline.folder.report import FileReport, FolderReport, ReportWriter, error_text, to_jsonable, utc_now
from faceswap_pipeline.folder.runner import FolderRun
from faceswap_pipeline.folder.settings import write_marker
from faceswap_pipeline.folder.writer import write_output
from faceswap_pipeline.io import DEFAULT_MAX_PIXELS, ImageReadError, LoadedImage, PathLike
from faceswap_pipeline.types import ImageRecord

if TYPE_CHECKING:
    from faceswap_pipeline.pipeline import Pipeline

logger = logging.getLogger("faceswap_pipeline.folder")  # the name users see on the runner's messages

RAY_MISSING = 'the Ray engine needs Ray: pip install "faceswap_pipeline[ray]" (or pip install "ray[data]")'
ACTOR_MEMORY = 1 << 30
"""Bytes of memory each network actor reserves: a CPU pipeline holds ~0.4 GB running a 512 px photo."""
TASK_RETRIES = 2
"""How often Ray re-runs a task (or an actor's batch) whose worker died, before its block is given
up (Ray Data's default, -1, retries forever: an input that crashes its decoder would loop)."""
HEAD_UNTIL = "crop"
"""The last stage of the CPU part (:func:`split_pipeline`): everything up to the face crops."""


def import_ray() -> Any:
    """``ray`` with ``ray.data`` imported; RuntimeError naming the extra to install when it is missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"{RAY_MISSING} ({exc})") from None
    return ray


@dataclass(frozen=True)
class PipelineSpec:
    """How a Ray worker builds its own pipeline: :func:`~faceswap_pipeline.api.load_pipeline`'s
    arguments except the device, which each worker chooses (``"cpu"`` for the CPU tasks, the
    actor's for the networks).

    Example:
        >>> spec = PipelineSpec("male2female", {"detector": "hog", "upscaler": "srresnet"})
        >>> pipe = spec.build("cpu")                                           # doctest: +SKIP
    """

    direction: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "device" in self.options:
            raise ValueError("PipelineSpec options must not name the device: each Ray worker chooses its own")

    def build(self, device: str = "cpu", head_only: bool = False) -> Pipeline:
        """The pipeline on ``device`` (``load_pipeline(direction, device=device, **options)``);
        ``head_only``: only its stages up to the face crops (:func:`split_pipeline`'s head), no
        network beyond the detectors loaded."""
        from faceswap_pipeline.api import load_pipeline

        return load_pipeline(self.direction, device=device, head_only=head_only, **self.options)

    def key(self) -> str:
        """A string that is equal for equal specs (the workers' cache key)."""
        return repr((self.direction, sorted((k, repr(v)) for k, v in self.options.items())))


def split_pipeline(pipeline: Pipeline, until: str = HEAD_UNTIL) -> tuple[Pipeline, Pipeline]:
    """``(head, tail)``: the stages up to and including the last one named ``until``, and the rest.

    With the default, the head is the per-image CPU work before any generator runs (detection,
    verification, the second pass, the face choice, the crop) and the tail the networks and the
    paste-back (landmarks, alignment, attributes, translation, upscaling, blend). Running
    ``head.process`` then ``tail.process`` on the same records is ``pipeline.process``. A pipeline
    without such a stage is all head.
    """
    from faceswap_pipeline.pipeline import Pipeline

    names = [s.name for s in pipeline.stages]
    cut = len(names) - names[::-1].index(until) if until in names else len(names)
    return Pipeline(pipeline.stages[:cut]), Pipeline(pipeline.stages[cut:])


@dataclass(frozen=True)
class _Context:
    """What every task and actor needs to know about the run (small and picklable)."""

    in_root: str
    out_root: str | None
    output_suffix: str | None
    stale_from: int | None
    max_pixels: int | None
    quality: int | None
    threads: int | None

    def output(self, rel: str) -> tuple[str | None, Path | None]:
        """The output's name (relative to the output folder) and path, as :func:`prepare_run` names it."""
        if self.out_root is None:
            return None, None
        rel_out = Path(rel) if self.output_suffix is None else Path(rel).with_suffix(self.output_suffix)
        return rel_out.as_posix(), Path(self.out_root) / rel_out

    def done(self, out_file: Path | None) -> bool:
        """Whether ``out_file`` is a finished output (exists and is not older than an ``--overwrite``'s start)."""
        if out_file is None:
            return False
        try:
            mtime = out_file.stat().st_mtime_ns
        except OSError:
            return False
        return self.stale_from is None or mtime > self.stale_from


def _fail(entry: FileReport, exc: BaseException) -> None:
    """:meth:`FileReport.fail` without its log line (the driver logs each failure once, when merging)."""
    entry.status = "error"
    entry.error = error_text(exc)
    if not isinstance(exc, ImageReadError):
        entry.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    entry.output = None


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


_HEADS: dict[tuple[str, int | None], Pipeline] = {}  # per worker process: the CPU tasks' head pipelines


def _head_pipeline(spec: PipelineSpec, threads: int | None) -> Pipeline:
    key = (spec.key(), threads)
    if key not in _HEADS:
        _set_threads(threads)
        head = spec.build("cpu", head_only=True)  # the detectors and the crop only, no generator or SR net
        head.warmup()
        _HEADS[key] = head
    return _HEADS[key]


def _states(blobs: Iterable[Any]) -> list[tuple[Any, ...]]:
    return [pickle.loads(bytes(b)) for b in blobs]


def _batch_of(indices: list[int], states: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    blobs = np.empty(len(states), dtype=object)
    blobs[:] = [pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL) for s in states]
    return {"index": np.asarray(indices, dtype=np.int64), "state": blobs}


def decode_detect(batch: dict[str, np.ndarray], spec: PipelineSpec, ctx: _Context) -> dict[str, np.ndarray]:
    """The CPU task stage: decode each input and run the pipeline's head stages on the batch.

    ``batch``: ``{"index": report indices, "input": paths relative to the input folder}``. Returns
    ``{"index", "state"}``, a pickled state per input: ``("done", entry)`` (skipped, or failed to
    read) or ``("todo", entry, loaded, record, seconds)`` for the actors.
    """
    indices = [int(i) for i in batch["index"]]
    states: list[tuple[Any, ...]] = []
    todo: list[tuple[int, FileReport, LoadedImage, ImageRecord]] = []
    for pos, rel in enumerate(batch["input"]):
        rel = str(rel)
        name, out_file = ctx.output(rel)
        entry = FileReport(input=rel, output=name)
        states.append(("done", entry))
        if ctx.done(out_file):  # written by a retried or concurrent task since the walk
            entry.status = "skipped"
            continue
        loaded, read_s = read_file(Path(ctx.in_root) / rel, ctx.max_pixels)
        entry.timings["read_s"] = read_s
        if not isinstance(loaded, LoadedImage):
            _fail(entry, loaded)
            continue
        todo.append((pos, entry, loaded, ImageRecord(image=loaded.rgb, key=str(loaded.path))))
    if todo:
        head = _head_pipeline(spec, ctx.threads)
        for pos, entry, loaded, rec in todo:  # one at a time: the head's stages work image by image
            t0 = time.perf_counter()
            head.process([rec])
            states[pos] = ("todo", entry, loaded, rec, time.perf_counter() - t0)
    return _batch_of(indices, states)


class NetworkActor:
    """The actor stage: one pipeline per actor (built once, on its device); runs the tail stages
    on each batch and builds the report entries as :class:`~faceswap_pipeline.folder.FolderRun` does.

    Returns ``{"index", "state"}``: ``("write", entry, loaded, image)`` for the write tasks
    (``image`` None: the input unchanged) or ``("done", entry)``.
    """

    def __init__(self, spec: PipelineSpec, device: str, ctx: _Context) -> None:
        _set_threads(ctx.threads)
        self.ctx = ctx
        head, self.tail = split_pipeline(spec.build(device))
        self.head_names = [s.name for s in head.stages]
        self.tail.warmup()
        self.results = PipelineBatch(self.tail, face_summary)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self.n_batches = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        indices = [int(i) for i in batch["index"]]
        states = _states(batch["state"])
        todo = [pos for pos, s in enumerate(states) if s[0] == "todo"]
        if not todo:
            return _batch_of(indices, states)
        recs = [states[pos][3] for pos in todo]
        batch_s: dict[str, float] = {}
        t0 = time.perf_counter()
        self.tail.process(recs, batch_timings=batch_s)
        tail_s = time.perf_counter() - t0
        if len(recs) > 1:  # the whole batch's stage times, the head's summed over its images as well
            head_s = {name: sum(r.timings.get(name, 0.0) for r in recs) for name in self.head_names}
            batch_s = {**head_s, **batch_s}
        results = self.results.results(recs, batch_s)
        self.n_batches += 1
        elapsed = tail_s + sum(states[pos][4] for pos in todo)
        for pos, res in zip(todo, results):
            _, entry, loaded, _, own_head_s = states[pos]
            states[pos] = self._entry(entry, loaded, res, own_head_s + tail_s, elapsed, len(todo))
        return _batch_of(indices, states)

    def _entry(self, entry: FileReport, loaded: LoadedImage, res: Any, own_s: float, elapsed: float,
               n: int) -> tuple[Any, ...]:
        """One image's report entry after processing (``FolderRun._process``'s rules)."""
        if n == 1:
            entry.timings["process_s"] = own_s
        else:
            own = getattr(res, "process_s", None)
            entry.timings["process_s"] = float(own) if own is not None else elapsed / n
            entry.batch = {"index": f"{self.token}:{self.n_batches}", "images": n, "process_s": round(elapsed, 6)}
        entry.info = {"image": loaded.summary()}
        if isinstance(res, BaseException):
            _fail(entry, res)
            return ("done", entry)
        try:
            entry.info.update(to_jsonable(dict(res.info)))
        except Exception as exc:  # noqa: BLE001 - a bad info dict fails this item only
            _fail(entry, exc)
            return ("done", entry)
        if self.ctx.out_root is None:
            entry.output, entry.status = None, "ok"
            return ("done", entry)
        return ("write", entry, loaded, res.image)


def encode_write(batch: dict[str, np.ndarray], ctx: _Context) -> dict[str, np.ndarray]:
    """The write task stage: write each output atomically unless it exists already; returns the
    shard report ``{"index", "entry"}`` (a pickled :class:`FileReport` per input)."""
    indices = [int(i) for i in batch["index"]]
    entries: list[FileReport] = []
    for state in _states(batch["state"]):
        entry = state[1]
        entries.append(entry)
        if state[0] != "write":
            continue
        _, _, loaded, image = state
        _, out_file = ctx.output(entry.input)
        assert out_file is not None
        if ctx.done(out_file):  # a retried task: this output is finished already
            entry.status = "skipped"
            continue
        w = write_output(loaded, out_file, image, ctx.quality)
        entry.timings["write_s"] = w.seconds
        if w.written is not None:
            entry.info["output_image"] = w.written
        if w.error is not None:
            _fail(entry, w.error)
        else:
            entry.status = "ok"
    blobs = np.empty(len(entries), dtype=object)
    blobs[:] = [pickle.dumps(e, protocol=pickle.HIGHEST_PROTOCOL) for e in entries]
    return {"index": np.asarray(indices, dtype=np.int64), "entry": blobs}


_RANK = {"ok": 3, "skipped": 2, "error": 1, "pending": 0}


def merge_shard(report: FolderReport, indices: Iterable[int], entries: Iterable[FileReport]) -> list[int]:
    """Merge one shard report into ``report``: each entry replaces the one at its index (keeping
    the input's size and mtime recorded by the walk). An index reported twice keeps the better
    outcome (``ok`` > ``skipped`` > ``error`` > ``pending``), so a duplicated shard cannot turn a
    finished input into a failure. Returns the indices whose status changed from pending.
    """
    fresh: list[int] = []
    for idx, new in zip(indices, entries):
        old = report.items[idx]
        if new.input != old.input:
            raise ValueError(f"shard entry {idx} is for {new.input!r}, the report's for {old.input!r}")
        if old.status != "pending" and _RANK.get(new.status, 0) <= _RANK.get(old.status, 0):
            continue
        if old.status == "pending":
            fresh.append(idx)
        new.size, new.mtime_ns = old.size, old.mtime_ns
        report.items[idx] = new
    return fresh


def number_batches(report: FolderReport) -> None:
    """Replace the actors' batch tokens in ``entry.batch["index"]`` by 1, 2, ... in input order."""
    order: dict[Any, int] = {}
    for it in report.items:
        if it.batch is not None and not isinstance(it.batch.get("index"), int):
            token = it.batch["index"]
            order.setdefault(token, len(order) + 1)
            it.batch = {**it.batch, "index": order[token]}


@dataclass(eq=False)
class RayRun:
    """A pipeline's folder run on Ray Data; see :mod:`faceswap_pipeline.folder.ray_engine`.

    Args:
        spec: how the workers build the pipeline.
        in_dir, out_dir: as for :class:`~faceswap_pipeline.folder.FolderRun` (shared file system
            on a multi-node cluster).
        address: the Ray cluster: None starts a local instance (or joins the one ``RAY_ADDRESS``
            names), ``"auto"`` the cluster this machine belongs to (``ray start``), ``"ray://host:10001"``
            a remote one. An already initialised Ray (``ray.init`` by the caller) is used as it is.
        device: the actors' device: ``"auto"`` (one GPU per actor when the cluster has GPUs,
            else CPU), ``"cpu"`` or ``"cuda"``.
        actors: network actors (an int, or ``(min, max)`` for an autoscaling pool); None: one per
            GPU, or on CPUs two thirds of the cluster's CPUs (at least 1; the rest decode, detect
            and write).
        actor_cpus: CPUs reserved per actor.
        actor_memory: bytes of memory reserved per actor (Ray places no more actors on a node than fit).
        batch_size: images per actor batch (their faces share network passes); None: 8 on GPU
            actors, else 1.
        threads: torch threads in each task and actor (None: Ray's default, one per reserved CPU).
        num_cpus: CPUs of a local instance started here (None: all).
        task_retries: how often a task (or an actor's batch) whose worker died is re-run. A block
            of inputs whose task still fails is dropped, its inputs run again one per task, and an
            input whose task fails alone too is reported as an error; the job goes on.
        **options: the other :class:`~faceswap_pipeline.folder.FolderRun` options (``overwrite``,
            ``report_path``, ``progress``, ``quality``, ``max_pixels``, ``output_suffix``,
            ``report_every_s``...). ``workers`` does not apply.
    """

    spec: PipelineSpec
    in_dir: PathLike
    out_dir: PathLike
    address: str | None = None
    device: str = "auto"
    actors: int | tuple[int, int] | None = None
    actor_cpus: float = 1.0
    actor_memory: int = ACTOR_MEMORY
    batch_size: int | None = None
    threads: int | None = None
    num_cpus: int | None = None
    task_retries: int = TASK_RETRIES
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device for the Ray engine must be auto, cpu or cuda, got {self.device!r}")
        if "workers" in self.options:
            raise ValueError("workers applies to the local engine; the Ray engine sizes its pools itself (actors=)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        # the local runner's checks and names (paths, options, settings), before Ray or any worker starts
        pipeline = self.spec.build("cpu")
        self.folder = FolderRun.for_pipeline(pipeline, self.in_dir, self.out_dir, batch_size=self.batch_size or 1,
                                             **self.options)

    def run(self) -> FolderReport:
        """Process the folder on Ray; returns the merged report (``.exit_code`` 1 if any input failed)."""
        f = self.folder
        t_start = time.perf_counter()
        plan = prepare_run(
            f.in_path, f.out_path, write_outputs=True, overwrite=f.overwrite, report_file=f.report_file,
            settings=f.settings, output_suffix=f.output_suffix, extensions=f.extensions, recursive=f.recursive,
            exclude=f.exclude,
        )
        report = plan.report
        total = len(report.items)
        saver = ReportWriter(report, f.report_file, f.report_every_s, t_start)
        saver.save(force=True)
        interrupted = True
        bar: Progress | None = None
        try:
            if plan.jobs:
                bar = Progress(total, should_show(f.progress), None if isinstance(f.progress, bool) else f.progress)
                bar.update(total - len(plan.jobs))
                counts = {"ok": 0, "error": 0}

                def merge(shard: dict[str, np.ndarray]) -> None:
                    for idx in merge_shard(report, (int(i) for i in shard["index"]), _states(shard["entry"])):
                        it = report.items[idx]
                        if it.status == "error":
                            logger.warning("%s: %s", it.input, it.error)
                        counts[it.status] = counts.get(it.status, 0) + 1
                        bar.update(1, ok=counts["ok"], err=counts["error"])
                    saver.save()

                # A block whose task fails on every retry (its worker died: a decoder crash, the OOM
                # killer) is dropped, not the job; its inputs are then run again one per block, so
                # that only the input that kills its task is left without a result.
                jobs = [j.index for j in plan.jobs]
                ds, per_block = self._dataset(plan, jobs)
                for shard in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    merge(shard)
                lost = [i for i in jobs if report.items[i].status == "pending"]
                if lost and len(lost) == len(jobs) > per_block:
                    raise RuntimeError(f"every task of the Ray run failed ({len(jobs)} inputs); see the workers' "
                                       "errors above (is this package installed on every node?)")
                if lost and per_block > 1:
                    logger.warning("ray engine: %d input(s) without a result (their task failed %d times); "
                                   "running them again one per task", len(lost), self.task_retries + 1)
                    ds, _ = self._dataset(plan, lost, per_block=1)
                    for shard in ds.iter_batches(batch_size=None, batch_format="numpy"):
                        merge(shard)
                    lost = [i for i in lost if report.items[i].status == "pending"]
                for idx in lost:
                    it = report.items[idx]
                    _fail(it, RuntimeError(f"its Ray task failed {self.task_retries + 1} times with this input alone "
                                           "(the worker died, or raised outside the pipeline's per-image handling)"))
                    logger.warning("%s: %s", it.input, it.error)
                    counts["error"] += 1
                    bar.update(1, ok=counts["ok"], err=counts["error"])
            number_batches(report)
            interrupted = False
        finally:
            if bar is not None:
                bar.close()
            self._stop_ray()
            report.complete = not interrupted
            report.finished = utc_now() if not interrupted else None
            saver.save(force=True)
            if report.complete and report.n_failed == 0 and plan.stale_from is not None and f.out_path is not None:
                with contextlib.suppress(OSError):
                    write_marker(f.out_path, plan.record, None)  # no stale output is left
        logger.info("ray folder run done: %d ok, %d skipped, %d failed in %.1f s",
                    report.n_ok, report.n_skipped, report.n_failed, report.elapsed_s)
        return report

    # ------------------------------------------------------------------------------------------

    def _dataset(self, plan: Any, jobs: list[int], per_block: int | None = None) -> tuple[Any, int]:
        """The Ray dataset of the report items ``jobs`` through the three stages (starts or joins
        Ray), and its inputs per block: ``per_block``, or with None a few blocks per CPU, at most
        ~32 inputs each."""
        ray = import_ray()
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            if self.num_cpus is not None and self.address is None:
                kw["num_cpus"] = self.num_cpus
            ray.init(address=self.address, **kw)
            self._started_ray = True
        ctx_data = ray.data.DataContext.get_current()
        if not hasattr(self, "_data_context_before"):
            self._data_context_before = (ctx_data, ctx_data.enable_progress_bars, ctx_data.max_errored_blocks)
        ctx_data.enable_progress_bars = should_show(self.folder.progress)
        ctx_data.max_errored_blocks = -1  # a block that fails on every retry is dropped (run() reports its inputs)
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        on_gpu = self.device == "cuda" or (self.device == "auto" and gpus > 0)
        if on_gpu and gpus == 0:
            raise RuntimeError("device cuda: the Ray cluster has no GPUs")
        actors = self.actors if self.actors is not None else (gpus if on_gpu else max(1, cpus * 2 // 3))
        batch = self.batch_size or (8 if on_gpu else 1)
        f = self.folder
        ctx = _Context(
            in_root=str((f.in_path.parent if f.in_path.is_file() else f.in_path).resolve()),
            out_root=None if f.out_path is None else str(f.out_path.resolve()),
            output_suffix=f.output_suffix, stale_from=plan.stale_from, max_pixels=f.max_pixels, quality=f.quality,
            threads=self.threads,
        )
        rows = [{"index": i, "input": plan.report.items[i].input} for i in jobs]
        if per_block is None:  # small blocks, so that a few inputs already spread over the cluster
            per_block = max(batch, min(32, math.ceil(len(rows) / (4 * max(1, cpus)))))
        logger.info("ray engine: %d inputs, %d CPUs, %d GPUs; %s network actor(s) on %s, batch %d",
                    len(rows), cpus, gpus, actors, "cuda" if on_gpu else "cpu", batch)
        ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / per_block)))
        with warnings.catch_warnings():  # Ray 2.60 names no parameter for the retries; they go as ray_remote_args
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            return self._stages(ray, ds, ctx, on_gpu, actors, batch), per_block

    def _stages(self, ray: Any, ds: Any, ctx: _Context, on_gpu: bool, actors: Any, batch: int) -> Any:
        """``ds`` through decode/detect tasks, the network actor pool and the write tasks."""
        ds = ds.map_batches(decode_detect, batch_size=batch, batch_format="numpy", fn_kwargs={"spec": self.spec, "ctx": ctx},
                            num_cpus=1, max_retries=self.task_retries)
        size = actors if isinstance(actors, int) else tuple(actors)
        pool = (ray.data.ActorPoolStrategy(size=size) if isinstance(size, int)
                else ray.data.ActorPoolStrategy(min_size=size[0], max_size=size[1]))
        # The actors reserve the memory their pipeline holds (which also keeps Ray Data from fusing the
        # decode/detect tasks into the actors when both ask for the same CPUs).
        ds = ds.map_batches(NetworkActor, batch_size=batch, batch_format="numpy", compute=pool,
                            fn_constructor_kwargs={"spec": self.spec, "device": "cuda" if on_gpu else "cpu", "ctx": ctx},
                            num_cpus=self.actor_cpus, num_gpus=1 if on_gpu else 0, memory=self.actor_memory,
                            max_task_retries=self.task_retries)  # a dead actor is restarted, its batch retried this often
        ds = ds.map_batches(encode_write, batch_size=batch, batch_format="numpy", fn_kwargs={"ctx": ctx}, num_cpus=1,
                            max_retries=self.task_retries)
        return ds

    def _stop_ray(self) -> None:
        before = getattr(self, "_data_context_before", None)
        if before is not None:  # the caller's Ray Data settings back
            before[0].enable_progress_bars, before[0].max_errored_blocks = before[1], before[2]
            del self._data_context_before
        if getattr(self, "_started_ray", False):
            import ray

            ray.shutdown()
            self._started_ray = False


def run_folder_ray(
    spec: PipelineSpec,
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    address: str | None = None,
    device: str = "auto",
    actors: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    num_cpus: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **options: Any,
) -> FolderReport:
    """``RayRun(spec, in_dir, out_dir, ...).run()``: the pipeline's folder run on Ray Data (see :class:`RayRun`)."""
    return RayRun(spec, in_dir, out_dir, address=address, device=device, actors=actors, batch_size=batch_size,
                  threads=threads, num_cpus=num_cpus, options={"max_pixels": max_pixels, **options}).run()

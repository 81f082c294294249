"""The parts of a training loop every trainer shares: time budgets, stop on a signal, resume bookkeeping.

* :class:`RunClock` keeps a run's cumulative wall and CPU time across resumes and answers
  whether this session's wall budget (``max_minutes``) or the run's CPU budget
  (``max_cpu_minutes``) is spent.
* :class:`StopOnSignal` turns SIGTERM / SIGINT into a flag the loop checks after each step, so the
  step finishes, the checkpoint is written and the trainer returns (installed only in the main
  thread; the previous handlers are restored on exit).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import TracebackType
from typing import Any

import torch


def training_device(name: str) -> torch.device:
    """``auto`` -> cuda (this rank's GPU under torchrun) when available, else cpu."""
    from faceswap_pipeline.api import resolve_device as resolve

    dev = resolve(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


class RunClock:
    """Wall and CPU time of a run, continued from a checkpoint's totals.

    Args:
        wall_s: the run's wall time before this session (a checkpoint's ``wall_time_s``).
        cpu_s: the run's training CPU time before this session (``cpu_time_s``).
    """

    def __init__(self, wall_s: float = 0.0, cpu_s: float = 0.0) -> None:
        self.wall0, self.cpu0 = float(wall_s), float(cpu_s)
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def session_s(self) -> float:
        """Wall seconds since this session started."""
        return time.perf_counter() - self.t0

    def wall_s(self) -> float:
        """The run's cumulative wall seconds."""
        return self.wall0 + time.perf_counter() - self.t0

    def cpu_s(self) -> float:
        """The run's cumulative CPU seconds of this process."""
        return self.cpu0 + time.process_time() - self.c0

    def over(self, max_minutes: float = 0.0, max_cpu_minutes: float = 0.0, cpu_s: float | None = None) -> str:
        """``"max_minutes"`` / ``"max_cpu_minutes"`` when that budget (0 = none) is spent, else ``""``.

        ``max_minutes`` counts this session's wall time; ``max_cpu_minutes`` the run's cumulative
        CPU time (``cpu_s`` if given, else :meth:`cpu_s`).
        """
        if max_minutes and self.session_s() / 60.0 >= max_minutes:
            return "max_minutes"
        if max_cpu_minutes and (self.cpu_s() if cpu_s is None else cpu_s) / 60.0 >= max_cpu_minutes:
            return "max_cpu_minutes"
        return ""


class StopOnSignal:
    """Context manager: while active, SIGTERM / SIGINT set :attr:`signum` instead of killing the process."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:  # finish the step, save, return
        self.signum = signum

    def __bool__(self) -> bool:
        return bool(self.signum)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._on_signal) for sig in self.signals}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


__all__ = ["RunClock", "StopOnSignal", "training_device"]

"""A training run's TensorBoard writer: scalars under ``<run_dir>/tb``, created on first use.

Only the main process of a run writes (``enabled=False`` on other ranks, or when the run turns
TensorBoard off); a machine without the ``tensorboard`` package logs a warning once and goes on.
Curves (losses, target rates, speed) are read in TensorBoard: no trainer draws its own plots.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RunWriter:
    """Lazy ``SummaryWriter(<run_dir>/tb)``; every method is a no-op when disabled or unavailable.

    Args:
        run_dir: the run folder.
        enabled: write at all (False on non-main ranks or with ``tensorboard=False``).
        purge_step: a resumed run's step: events at or after it from the interrupted session are
            dropped (None: keep everything).
    """

    def __init__(self, run_dir: str | os.PathLike[str], enabled: bool = True, purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.purge_step = purge_step
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        """The ``SummaryWriter``, created on first use (None when disabled or tensorboard is missing)."""
        if self._writer is None and self.enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception as e:  # noqa: BLE001 - tensorboard is optional
                log.warning("no TensorBoard: %s", e)
                self.enabled = False
                return None
            self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.purge_step)
        return self._writer

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record one scalar at ``step``."""
        w = self.writer
        if w is not None:
            w.add_scalar(tag, value, step)

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        """Record several scalars at ``step`` (tags ``prefix + key``)."""
        for k, v in values.items():
            self.scalar(prefix + k, v, step)

    def flush(self) -> None:
        """Write pending events to disk (only if the writer was ever created)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close (only if the writer was ever created)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


__all__ = ["RunWriter"]

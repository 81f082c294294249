"""The folder run's progress bar (tqdm, one step per image) and when it is shown."""

from __future__ import annotations

import sys
from typing import Any


def should_show(progress: Any) -> bool:
    """Whether to draw a bar: ``True`` when stderr is a terminal, a stream always, ``False``/None never."""
    if progress is None or progress is False:
        return False
    if progress is not True:  # a stream to draw on
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class Progress:
    """A tqdm bar (per image) when wanted, else a no-op with the same methods.

    While the bar is shown, log records of the root logger's console handlers are written through
    tqdm (``logging_redirect_tqdm``), so warnings appear on their own lines above the bar instead
    of being spliced into it.
    """

    def __init__(self, total: int, enabled: bool, stream: Any = None) -> None:
        self._bar = None
        self._redirect: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                from tqdm.contrib.logging import logging_redirect_tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                return
            self._bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=stream, smoothing=0.1)
            self._redirect = logging_redirect_tqdm(tqdm_class=tqdm)
            self._redirect.__enter__()

    def update(self, n: int, **postfix: Any) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

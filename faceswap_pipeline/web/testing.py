"""``faceswap-pipeline serve`` in a subprocess, for tests and scripts: :class:`LocalServer`."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


class LocalServer:
    """Starts ``faceswap-pipeline serve --port 0 ARGS`` on loopback and waits until it answers.

    Example:
        >>> with LocalServer("--weights-dir", "my_weights") as srv:      # doctest: +SKIP
        ...     urllib.request.urlopen(srv.url + "api/health")

    Attributes:
        url: ``http://127.0.0.1:PORT/`` once started.
        proc: the server process.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, startup_timeout: float = 180.0) -> None:
        self.args, self.env, self.startup_timeout = list(args), env, startup_timeout
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="faceswap-serve-", suffix=".log", delete=False)
        self._final_log: str | None = None

    def __enter__(self) -> LocalServer:
        cmd = [sys.executable, "-m", "faceswap_pipeline.cli", "serve", "--host", "127.0.0.1", "--port", "0", *self.args]
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env, text=True)
        try:
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], self.startup_timeout)
            line = self.proc.stdout.readline() if ready else ""
            if not ready:
                raise RuntimeError(f"the server printed no address in {self.startup_timeout:.0f} s:\n{self.log_text()}")
            if not line:
                raise RuntimeError(f"the server exited before listening (rc {self.proc.wait(10)}):\n{self.log_text()}")
            self.url = json.loads(line)["serving"]
            deadline = time.monotonic() + self.startup_timeout
            while True:
                try:
                    with urllib.request.urlopen(self.url + "api/health", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the server did not answer /api/health:\n{self.log_text()}") from None
                    time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Ctrl-C the server (it finishes the photo in hand and removes its temporary folder); kill it if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._final_log is None:
            self._final_log = self.log_text()
            self._log.close()
            os.unlink(self._log.name)
        return self.proc.returncode

    def log_text(self) -> str:
        """What the server wrote to stderr (so far, or all of it once stopped)."""
        if self._final_log is not None:
            return self._final_log
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def memory(self) -> dict[str, int]:
        """The server's resident memory now (``rss``) and its peak (``peak``), in bytes (Linux ``/proc``)."""
        assert self.proc is not None
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "peak"] = int(value.split()[0]) * 1024
        return out


def require(*modules: str) -> None:
    """Skip the calling test module when ``modules`` are not installed, except in CI (``$CI`` set), where that fails.

    The web tests need the ``web`` and ``test`` extras (and Chromium for the browser test); CI
    installs them all, so a missing one there is an error rather than a silent skip.
    """
    import importlib.util

    import pytest

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    why = f"needs {', '.join(missing)} (pip install -e '.[web,test]')"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {why}", pytrace=False)
    pytest.skip(why, allow_module_level=True)

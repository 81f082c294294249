"""One description of the machine a number was measured on (for manifests, model cards, benchmarks)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (e.g. ``"AMD EPYC"``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str | None = None) -> str:
    """E.g. ``"AMD EPYC, 2 cores, 1 torch thread(s), no GPU"`` or ``"..., NVIDIA H100 80GB HBM3"``.

    Args:
        device: the torch device the measurement ran on (``"cuda"``, ``"cuda:1"``, ``"cpu"``);
            None: name the first GPU if torch sees one.
    """
    import torch

    if device is None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    elif str(device).startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
    else:
        gpu = "no GPU used"
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), {gpu}"

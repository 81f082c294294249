"""One description of the machine a number was measured on (for manifests, model cards, benchmarks)."""

from __future__ import annotations

import functools
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


def describe_machine(device: str | None = None, threads: int | None = None) -> str:
    """E.g. ``"AMD EPYC, 2 cores, 1 torch thread(s), no GPU"`` or ``"..., NVIDIA H100 80GB HBM3"``.

    Args:
        device: the torch device the measurement ran on (``"cuda"``, ``"cuda:1"``, ``"cpu"``);
            None: name the first GPU if torch sees one.
        threads: the torch threads the measurement used (None: this process's current count).
    """
    import torch

    if device is None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    elif str(device).startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
    else:
        gpu = "no GPU used"
    return f"{cpu_name()}, {os.cpu_count()} cores, {threads or torch.get_num_threads()} torch thread(s), {gpu}"


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU has native bfloat16 dot-product instructions (AVX512-BF16 or AMX-BF16).

    Read from ``/proc/cpuinfo`` (Linux); False elsewhere. Without them oneDNN emulates bf16 and it
    is no faster than float32 (measured 15x slower for CycleGAN training on an AVX2-only EPYC).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_amp(amp: str, device_type: str) -> bool:
    """``"auto"`` | ``"bf16"`` | ``"none"`` -> whether to use bf16 autocast on ``device_type``.

    ``auto``: bf16 on CUDA and on CPUs with native bf16 (:func:`native_bf16`), float32 elsewhere.
    """
    if amp not in ("auto", "bf16", "none"):
        raise ValueError(f"amp must be auto, bf16 or none, not {amp!r}")
    if amp == "auto":
        return device_type == "cuda" or (device_type == "cpu" and native_bf16())
    return amp == "bf16"

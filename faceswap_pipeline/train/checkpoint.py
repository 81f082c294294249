"""Atomic, format-tagged training checkpoints (``torch.save`` dicts loadable with ``weights_only=True``).

Every trainer's checkpoint is a plain dict of tensors, numbers, strings, lists and dicts with a
``"format"`` key naming its layout and version (e.g. ``"faceswap_pipeline/cyclegan-ckpt/1"``).
:func:`save_checkpoint` writes it to a temporary file and renames it, so a crash never leaves a
half-written checkpoint; :func:`load_checkpoint` refuses a file of another format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file then rename (a crash never leaves a half checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str], fmt: str) -> Path:
    """Write ``state`` tagged ``{"format": fmt, ...}`` atomically; returns the path."""
    atomic_save({"format": fmt, **{k: v for k, v in state.items() if k != "format"}}, path)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], fmt: str, what: str = "trainer") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; ``ValueError`` unless its ``format`` is ``fmt``.

    Args:
        path: the checkpoint file.
        fmt: the expected format tag.
        what: the trainer's name, for the error message (e.g. ``"CycleGAN trainer"``).
    """
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != fmt:
        got = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
        raise ValueError(f"{path} is not a {what} checkpoint (format {got!r})")
    return ck


__all__ = ["atomic_save", "load_checkpoint", "save_checkpoint"]

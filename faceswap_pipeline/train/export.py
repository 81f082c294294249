"""Export a trained model: weights file + manifest entry + a description of the machine, in one call.

Every trainer ships its nets through :func:`export_model`, so every manifest entry starts with the
same fields (``file``, ``sha256``, ``arch``, ``kwargs``, ``storage``) followed by the trainer's own
(``io``, ``framing``, ``training``, ``metrics`` ...), and ``training.machine`` is always filled in
(:func:`~faceswap_pipeline.machine.describe_machine` unless the trainer gives one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def export_model(
    model: nn.Module | dict[str, torch.Tensor],
    name: str,
    weights_dir: str | os.PathLike[str] | None,
    *,
    file: str,
    arch: str,
    kwargs: dict[str, Any],
    storage: str = "fp16",
    **fields: Any,
) -> tuple[Path, str]:
    """Write ``model`` as ``<weights_dir>/<file>`` and register it as ``name`` in ``<weights_dir>/manifest.json``.

    Args:
        model: the net or its state dict.
        name: manifest name (``arch.tag``, e.g. ``cyclegan.male2female``).
        weights_dir: the weights folder (None: :func:`~faceswap_pipeline.weights.primary_dir`'s default).
        file: file name inside ``weights_dir``.
        arch, kwargs: registry architecture and its constructor arguments.
        storage: ``int4``, ``int8``, ``fp16`` or ``fp32`` (:func:`~faceswap_pipeline.weights.quantize_state_dict`).
        **fields: the rest of the entry, in order (``io``, ``framing``, ``training``, ``metrics`` ...).
            A ``training`` dict without ``machine`` gets the description of this machine.

    Returns:
        ``(path, sha256)`` of the written file.
    """
    from faceswap_pipeline.machine import describe_machine
    from faceswap_pipeline.weights import primary_dir, register_weights, save_weights

    path = primary_dir(weights_dir) / file
    sha = save_weights(model, path, arch=arch, kwargs=kwargs, storage=storage)
    if isinstance(fields.get("training"), dict) and not fields["training"].get("machine"):
        fields["training"] = {**fields["training"], "machine": describe_machine()}
    entry = {"file": file, "sha256": sha, "arch": arch, "kwargs": kwargs, "storage": storage, **fields}
    register_weights(name, entry, weights_dir)
    return path, sha


def restore_model(name: str, storage: str, weights_dir: str | os.PathLike[str] | None = None,
                  metrics: dict[str, Any] | None = None, out_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Re-store a shipped model in another storage (e.g. ``int8`` -> ``int4``): in place, or into ``out_dir``.

    The stored weights are dequantised and quantised again (so the result is what a fresh export
    from them would write); the entry keeps every field, changes ``sha256`` / ``storage``, records
    ``restored_from`` (the previous storage and sha256) and merges ``metrics`` (the re-stored
    model's measured figures) into its metrics. With ``out_dir`` the file and entry go there (same
    file name) and the original stays as it is.

    Returns:
        ``(path, sha256)`` of the rewritten file.
    """
    from faceswap_pipeline.weights import load_state_dict, locate

    state, entry = load_state_dict(name, weights_dir)
    folder, _ = locate(name, weights_dir)
    fields = {k: v for k, v in entry.items() if k not in ("file", "sha256", "arch", "kwargs", "storage")}
    fields["restored_from"] = {"storage": entry.get("storage"), "sha256": entry["sha256"]}
    if metrics:
        fields["metrics"] = {**fields.get("metrics", {}), **metrics}
    return export_model(state, name, out_dir if out_dir is not None else folder, file=entry["file"], arch=entry["arch"], kwargs=entry["kwargs"],
                        storage=storage, **fields)


__all__ = ["export_model", "restore_model"]

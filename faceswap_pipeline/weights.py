"""Shipped model weights: manifest, sha256 verification, safe loading, compact storage.

``weights/manifest.json`` maps a model name (``family.tag``, e.g. ``cyclegan.male2female``) to::

    {
      "file": "cyclegan_male2female.safetensors",  # relative to the weights folder
      "sha256": "...",                              # checked on every load
      "arch": "cyclegan_resnet",                    # key of faceswap_pipeline.registry.ARCHS
      "kwargs": {"ngf": 32, "n_blocks": 9},         # constructor arguments
      "storage": "int8",                            # int4 | int8 | fp16 | fp32 (see quantize_state_dict)
      "io": {"range": [-1, 1], "size": 128},        # what the network expects
      "framing": {...},                             # crop factors the model was trained with
      "training": {"command": ..., "data": ..., "steps": ..., "wall_time_s": ...},
      "metrics": {...}
    }

Weights are read with ``safetensors`` (no pickle). A model is looked up first in the
``weights_dir`` argument (else the ``FACESWAP_WEIGHTS`` environment variable), then in the shipped
weights: the repository's ``weights/`` (source checkout or editable install), or
``<prefix>/share/faceswap_pipeline/weights`` (wheel install). See :func:`search_dirs`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

ENV_VAR = "FACESWAP_WEIGHTS"
MANIFEST = "manifest.json"
_QSUFFIX, _SSUFFIX = ".__int8", ".__scale"
_Q4SUFFIX, _S4SUFFIX, _SHAPESUFFIX = ".__int4", ".__scale4", ".__shape"
INT4_GROUP = 32  # int4 storage: weights per fp16 scale (along each output channel's flattened inputs)
INT4_MIN_NUMEL = 65536  # smaller weight tensors (first / last layers) stay int8 under int4 storage
STORAGES = ("int4", "int8", "fp16", "fp32")


class WeightsError(RuntimeError):
    """A model's weights are missing, unknown, corrupt or do not fit its architecture."""


def shipped_dir() -> Path:
    """The weights that ship with the package: the repository's ``weights/`` (source checkout or
    editable install), else ``<prefix>/share/faceswap_pipeline/weights`` (wheel install)."""
    repo = Path(__file__).resolve().parent.parent / "weights"
    if repo.is_dir():
        return repo
    return Path(sys.prefix) / "share" / "faceswap_pipeline" / "weights"


def primary_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The first folder searched: ``weights_dir``, else ``$FACESWAP_WEIGHTS``, else the shipped one."""
    if weights_dir is not None:
        return Path(weights_dir)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return shipped_dir()


def check_explicit_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder the caller asked for (``weights_dir``, else ``$FACESWAP_WEIGHTS``), checked.

    Returns None when neither is set (the shipped weights are used).

    Raises:
        WeightsError: the folder asked for does not exist or is not a folder. A typo must not
            silently fall back to the shipped weights.
    """
    if weights_dir is not None:
        folder, source = Path(weights_dir), "weights folder"
    elif os.environ.get(ENV_VAR):
        folder, source = Path(os.environ[ENV_VAR]), f"{ENV_VAR} folder"
    else:
        return None
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise WeightsError(f"{source} {str(folder)!r} {what} (unset it to use the shipped weights)")
    return folder


def search_dirs(weights_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for a model, in order: :func:`primary_dir`, then the shipped weights.

    So a folder of your own models (``--weights-dir`` / ``$FACESWAP_WEIGHTS``) overrides the
    models it has, and everything else still comes from the shipped weights.

    Raises:
        WeightsError: an explicitly given folder does not exist (see :func:`check_explicit_dir`).
    """
    check_explicit_dir(weights_dir)
    dirs = [primary_dir(weights_dir), shipped_dir()]
    return [d for i, d in enumerate(dirs) if d.resolve() not in {x.resolve() for x in dirs[:i]}]


def read_manifest(weights_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``models`` mapping of one folder's manifest (empty if it has none).

    Raises:
        WeightsError: an explicitly given folder does not exist (see :func:`check_explicit_dir`).
    """
    check_explicit_dir(weights_dir)
    path = primary_dir(weights_dir) / MANIFEST
    cache = _MANIFESTS.get()
    key = path.resolve()
    if cache is not None and key in cache:
        return cache[key]
    models = _parse_manifest(path)
    if cache is not None:
        cache[key] = models
    return models


def _parse_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("models", {})


_MANIFESTS: contextvars.ContextVar[dict[Path, dict[str, Any]] | None] = contextvars.ContextVar("manifests", default=None)


@contextlib.contextmanager
def manifests_read_once() -> Iterator[None]:
    """Within the block, :func:`read_manifest` parses each folder's manifest once and hands out that
    parse again (treat what it returns as read-only). :func:`~faceswap_pipeline.api.load_pipeline`,
    ``load_detector`` and ``load_upscaler`` load all their models inside one block; nested blocks
    share the outermost one's parses, and :func:`register_weights` drops the folder's.
    """
    if _MANIFESTS.get() is not None:
        yield
        return
    token = _MANIFESTS.set({})
    try:
        yield
    finally:
        _MANIFESTS.reset(token)


def locate(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[Path, dict[str, Any]]:
    """``(folder, manifest entry)`` of the first searched folder that has ``name``.

    Raises:
        WeightsError: no searched folder has it (the message names them and what they have).
    """
    seen: list[str] = []
    for d in search_dirs(weights_dir):
        models = read_manifest(d)
        if name in models:
            return d, models[name]
        seen.append(f"{d / MANIFEST} (has: {', '.join(sorted(models)) or 'none'})")
    raise WeightsError(
        f"no trained weights for {name!r} in {'; '.join(seen)}. "
        f"Train them (see README, 'Training') or point {ENV_VAR} at a folder that has them."
    )


def has_model(name: str, weights_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether any searched folder (see :func:`search_dirs`) has ``name`` in its manifest."""
    return any(name in read_manifest(d) for d in search_dirs(weights_dir))


def model_entry(name: str, weights_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The manifest entry of ``name`` (see :func:`locate`)."""
    return locate(name, weights_dir)[1]


def model_framing(names: list[str], weights_dir: str | os.PathLike[str] | None = None) -> tuple[tuple[float, ...], int]:
    """The crop framing ``(rescale, size)`` the models ``names`` were trained with (their ``framing`` entry).

    A model with no recorded framing counts as the original design's
    (:data:`~faceswap_pipeline.ops.geometry.SEED_RESCALE`, 128 px). Raises ``ValueError`` if the
    models differ (one crop stage feeds them all).
    """
    from faceswap_pipeline.ops.geometry import SEED_RESCALE

    framings = set()
    for name in names:
        fr = model_entry(name, weights_dir).get("framing", {})
        framings.add((tuple(float(f) for f in fr.get("rescale", SEED_RESCALE)), int(fr.get("size", 128))))
    if len(framings) != 1:
        raise ValueError(f"models {names} were trained with different framings: {framings}")
    return framings.pop()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Check that ``name``'s file exists and matches the manifest's sha256; return its path."""
    return _verified_file(name, *locate(name, weights_dir))


def _verified_file(name: str, d: Path, entry: dict[str, Any]) -> Path:
    path = d / entry["file"]
    if not path.is_file():
        raise WeightsError(f"weights file for {name!r} is missing: {path} (expected sha256 {entry['sha256']})")
    got = sha256_file(path)
    if got != entry["sha256"]:
        raise WeightsError(
            f"weights file for {name!r} is corrupt: {path} has sha256 {got}, manifest expects {entry['sha256']}"
        )
    return path


def _int8_per_channel(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one fp32 scale per output channel (dim 0): ``(q int8 of v's shape, scale (C,))``."""
    flat = v.float().reshape(v.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    return torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8).reshape(v.shape), scale.float()


def _int4_groups(v: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 4-bit codes in groups of ``group`` weights along each output channel's flattened inputs.

    Each group's fp16 scale is the one of ``amax / 7 * {1.0, 0.95, ..., 0.7}`` (clipping the
    largest weights a little) with the least squared error. Returns ``(packed, scale)``: ``packed``
    uint8 ``(C, G * group / 2)``, two codes ``q + 8`` in [1, 15] per byte (low nibble first);
    ``scale`` fp16 ``(C, G)``. The flattened rows are zero-padded to whole groups.
    """
    flat = v.float().reshape(v.shape[0], -1)
    pad = (-flat.shape[1]) % group
    flat = torch.nn.functional.pad(flat, (0, pad)).reshape(flat.shape[0], -1, group)  # (C, G, group)
    amax = flat.abs().amax(dim=2, keepdim=True).clamp_min(1e-12)
    best_err = torch.full(amax.shape, float("inf"))
    best_scale = amax / 7.0
    for shrink in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7):
        sc = (amax * shrink / 7.0).half().float()  # the scale as stored
        err = (torch.round(flat / sc).clamp(-7, 7) * sc - flat).square().sum(dim=2, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, sc, best_scale)
    q = (torch.round(flat / best_scale).clamp(-7, 7) + 8).to(torch.uint8).reshape(flat.shape[0], -1)
    return q[:, 0::2] | (q[:, 1::2] << 4), best_scale.squeeze(2).half()


def _int4_decode(packed: torch.Tensor, scale: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_int4_groups`: fp32 weights of ``shape`` (an int64 tensor of the dims)."""
    q = torch.stack([packed & 0x0F, packed >> 4], dim=2).reshape(packed.shape[0], -1).float() - 8.0
    w = (q.reshape(q.shape[0], scale.shape[1], -1) * scale.float().unsqueeze(2)).reshape(q.shape[0], -1)
    dims = [int(d) for d in shape.tolist()]
    return w[:, : math.prod(dims[1:])].reshape(dims).contiguous()


def quantize_state_dict(state: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    """Encode a float state dict for storage.

    ``int8``: every floating tensor with >= 2 dims (conv / linear weights) becomes symmetric int8
    with one fp32 scale per output channel (dim 0), stored as ``key.__int8`` + ``key.__scale``;
    1-D tensors (biases, norms) stay fp32. ``int4``: weight tensors of >= ``INT4_MIN_NUMEL``
    elements become 4-bit codes with one fp16 scale per ``INT4_GROUP`` weights (``key.__int4`` +
    ``key.__scale4`` + ``key.__shape``, about 4.5 bits a weight); smaller ones are stored as
    under ``int8``. ``fp16``: floating tensors cast to fp16. ``fp32``: as is.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        if not v.is_floating_point():
            out[k] = v
        elif storage == "int4" and v.dim() >= 2 and v.numel() >= INT4_MIN_NUMEL:
            out[k + _Q4SUFFIX], out[k + _S4SUFFIX] = _int4_groups(v)
            out[k + _SHAPESUFFIX] = torch.tensor(v.shape, dtype=torch.int64)
        elif storage in ("int4", "int8") and v.dim() >= 2:
            out[k + _QSUFFIX], out[k + _SSUFFIX] = _int8_per_channel(v)
        elif storage == "fp16":
            out[k] = v.half()
        else:
            out[k] = v.float()
    return out


def dequantize_state_dict(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_state_dict`: every floating tensor comes back as fp32."""
    out: dict[str, torch.Tensor] = {}
    for k, v in stored.items():
        if k.endswith((_SSUFFIX, _S4SUFFIX, _SHAPESUFFIX)):
            continue
        if k.endswith(_Q4SUFFIX):
            base = k[: -len(_Q4SUFFIX)]
            out[base] = _int4_decode(v, stored[base + _S4SUFFIX], stored[base + _SHAPESUFFIX])
        elif k.endswith(_QSUFFIX):
            base = k[: -len(_QSUFFIX)]
            scale = stored[base + _SSUFFIX]
            out[base] = v.float() * scale.view(-1, *([1] * (v.dim() - 1)))
        elif v.is_floating_point():
            out[k] = v.float()
        else:
            out[k] = v
    return out


def save_weights(
    model: nn.Module | dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    arch: str,
    kwargs: dict[str, Any],
    storage: str = "fp16",
) -> str:
    """Write a model's weights as safetensors (atomically) and return the file's sha256.

    The header metadata records ``arch`` and ``kwargs`` so a file describes itself.
    """
    from safetensors.torch import save_file

    state = model.state_dict() if isinstance(model, nn.Module) else model
    stored = quantize_state_dict(state, storage)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        meta = {"format": "faceswap_pipeline/1", "arch": arch, "kwargs": json.dumps(kwargs), "storage": storage}
        save_file(stored, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shipped weights must be readable by everyone
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_file(path)


def register_weights(name: str, entry: dict[str, Any], weights_dir: str | os.PathLike[str] | None = None) -> None:
    """Add or replace ``name`` in the manifest (atomic rewrite, keys sorted for clean diffs)."""
    d = primary_dir(weights_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / MANIFEST
    doc = {"format": 1, "models": {}}
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
    doc["models"][name] = entry
    doc["models"] = dict(sorted(doc["models"].items()))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    cache = _MANIFESTS.get()
    if cache is not None:
        cache.pop(path.resolve(), None)


def load_state_dict(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify and read ``name``'s weights; returns ``(fp32 state_dict, manifest entry)``."""
    from safetensors.torch import load_file

    d, entry = locate(name, weights_dir)
    path = _verified_file(name, d, entry)
    try:
        stored = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"cannot read weights file {path} for {name!r}: {e}") from e
    return dequantize_state_dict(stored), entry


def load_model(name: str, weights_dir: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Build ``name``'s architecture from the manifest, load its verified weights, return it in eval mode."""
    import faceswap_pipeline.archs  # noqa: F401  (registers the architectures)
    from faceswap_pipeline.registry import ARCHS

    state, entry = load_state_dict(name, weights_dir)
    model: nn.Module = ARCHS.get(entry["arch"])(**entry.get("kwargs", {}))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights of {name!r} do not fit architecture {entry['arch']}: {e}") from e
    return model.to(device).eval()



"""CycleGAN trainer (seed 002, issue 4): male <-> female generators.

The maths is the seed's (Zhu et al. 2017 with the seed's changes):

* two generators ``G_m2f`` / ``G_f2m`` (:class:`~faceswap_pipeline.archs.cyclegan.ResnetGenerator`,
  ``c7s1-32, d64, d128, R128 x9, u64, u32, c7s1-3``) and two 70x70 PatchGANs ``D_m`` / ``D_f``;
* LSGAN adversarial loss, cycle L1 with ``lambda_cycle = 10``;
* identity loss computed as a **perceptual** loss: L1 distance between the attribute network's
  features (:meth:`~faceswap_pipeline.archs.attributes.AttributeNet.features`, the project's
  stand-in for VGG-16) of ``G_m2f(real_f)`` and ``real_f`` (and the reverse), weighted by
  ``lambda_identity`` (default 5.0 = 0.5 * lambda_cycle, the reference implementation's scale);
* discriminators see fakes through an :class:`ImagePool` of 50 (per image: 50 % a stored fake
  that the new one replaces);
* Adam(2e-4, betas 0.5/0.999), constant then linearly decayed to zero; InstanceNorm everywhere.

Speed without changing the maths: batches (InstanceNorm is per sample, so a batch is B seed
steps' worth of gradients averaged), inputs of the same generator concatenated into one call,
bf16 autocast, channels_last, optional ``torch.compile``, data held as a uint8 tensor on the
device with flips/jitter done there, and no host synchronisation except at log/validation steps.

Multi-GPU: launched by ``torchrun`` (``WORLD_SIZE > 1``) the trainer initialises a process group
(nccl on cuda, gloo on cpu), wraps the nets in DDP, and gives each rank a disjoint shard of the
in-memory data; only rank 0 logs and saves.

Command line (flags are generated from :class:`CycleGANConfig`)::

    python -m faceswap_pipeline.train.cyclegan --pack-m data_cache/packs/utk_train.npz ... \\
        --attr-weights /path/to/weights --run-dir runs/m2f --max-minutes 60
    python -m faceswap_pipeline.train.cyclegan --resume runs/m2f/last.pt [--n-steps N ...]
    python -m faceswap_pipeline.train.cyclegan --export runs/m2f/last.pt --out-dir weights
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.archs.cyclegan import PatchDiscriminator, ResnetGenerator
from faceswap_pipeline.machine import describe_machine
from faceswap_pipeline.ops.geometry import CHIP_RESCALE

log = logging.getLogger(__name__)

CKPT_FORMAT = "faceswap_pipeline/cyclegan-ckpt/1"
LOSS_NAMES = ("G_gan", "G_cycle", "G_idt", "G_attr", "D_m", "D_f")


# --------------------------------------------------------------------------------------- config
@dataclass
class CycleGANConfig:
    """Everything a CycleGAN run depends on; saved as ``config.json`` in the run folder.

    Domain ``m`` is the male domain (source of ``G_m2f``), ``f`` the female one. A domain is a pack
    file plus a selection over its label arrays, e.g. ``"gender=0,age>=18,age<=70"``.
    """

    # data
    domain_m: str = "male"  # names of the two domains: the generators ship as cyclegan.<m>2<f> / <f>2<m>
    domain_f: str = "female"
    balance: str = ""  # a label (e.g. "gender") whose values are oversampled to equal counts inside each domain
    attr_filter: float = 0.0  # keep training faces the attribute net gives >= this probability of their domain's class
    pack_m: str = ""
    pack_f: str = ""
    select_m: str = "gender=0"
    select_f: str = "gender=1"
    val_pack_m: str = ""
    val_pack_f: str = ""
    val_select_m: str = ""
    val_select_f: str = ""
    n_val: int = 256
    # the attribute network (identity-loss feature space and target-rate judge)
    attr_weights: str = ""
    attr_name: str = "attributes.v1"
    identity_layers: str = "1,2"
    # networks (the seed's)
    ngf: int = 32
    n_blocks: int = 9
    # warm start (no --resume): a weights folder whose cyclegan.male2female / female2male
    # generators (and their manifest step count, wall time and target-rate history) seed the run;
    # discriminators, optimisers and pools start fresh
    init_generators: str = ""
    d_warmup_steps: int = 500  # after a warm start: discriminator-only steps against the loaded generators
    ndf: int = 64
    n_layers: int = 3
    image_size: int = 128
    # the sample-efficient CPU recipe (issue 11); every default is off, i.e. the seed's recipe
    upsample_init: str = "normal"  # "bilinear": transposed convs start as bilinear upsampling (no 2-px grid)
    g_pretrain_steps: int = 0  # generator warm start: L1 autoencoder steps (x -> x) before the adversarial game
    low_res: int = 0  # resolution curriculum: train at this size (e.g. 64) for the first low_res_steps steps
    low_res_steps: int = 0
    lambda_attr: float = 0.0  # attribute guidance: CE of the frozen attribute net on jittered G(x) to the target class
    attr_head: str = "gender"  # head of the attribute net the guidance uses
    attr_class_m: int = 0  # its class of domain m (and of domain f): the guidance compares only these two
    attr_class_f: int = 1
    attr_jitter: float = 0.06  # guidance jitter: random shift (fraction of the side), scale 1 +- this, flips
    attr_grey: bool = False  # guidance sees G(x) in greyscale: colour (lipstick, eye shadow) cannot fool it
    attr_blur: float = 0.0  # guidance sees G(x) blurred by a random Gaussian, sigma in [0, this] px of 128-px faces
    attr_margin: float = 0.0  # guidance stops pushing a face once the classifier gives it this target probability
    uk_phase_equal: bool = False  # keep every uk layer's four output phases at equal DC gain (no 2-px grid)
    lr_d: float = 0.0  # discriminator learning rate (0 = lr; TTUR when larger)
    # optimisation (the seed's)
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    pool_size: int = 50
    n_steps: int = 10000
    n_steps_decay: int = 5000
    # augmentation (on the device)
    flip: bool = True
    jitter: int = 0
    # speed
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 on CUDA and on CPUs with native bf16, float32 elsewhere
    channels_last: bool = False
    compile: bool = False
    threads: int = 0
    # bookkeeping
    seed: int = 0
    run_dir: str = "runs/cyclegan"
    log_every: int = 50
    grid_every: int = 500
    val_every: int = 1000
    ckpt_every: int = 500
    max_minutes: float = 0.0
    max_cpu_minutes: float = 0.0  # stop when this run's training CPU time (all phases, cumulative) reaches it
    tensorboard: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` on inconsistent settings."""
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be auto, bf16 or none, not {self.amp!r}")
        if self.image_size % 8 or (self.low_res and (self.low_res % 8 or self.image_size % self.low_res)):
            raise ValueError("image_size (and low_res) must be divisible by 8, and image_size by low_res")
        if self.upsample_init not in ("normal", "bilinear"):
            raise ValueError(f"upsample_init must be normal or bilinear, not {self.upsample_init!r}")
        if self.attr_head not in ("gender", "race"):
            raise ValueError(f"attr_head must be gender or race, not {self.attr_head!r}")
        if not self.domain_m or not self.domain_f or "2" in self.domain_m + self.domain_f or self.domain_m == self.domain_f:
            raise ValueError("domain_m and domain_f must be two different names without a '2'")

    def directions(self) -> tuple[str, str]:
        """``("<m>2<f>", "<f>2<m>")``: the directions of ``G_m2f`` and ``G_f2m`` (e.g. male2female)."""
        return f"{self.domain_m}2{self.domain_f}", f"{self.domain_f}2{self.domain_m}"
        if self.batch_size < 1 or self.n_steps < 1 or not 0 <= self.n_steps_decay <= self.n_steps:
            raise ValueError("need batch_size >= 1, n_steps >= 1, 0 <= n_steps_decay <= n_steps")


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {s!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type = CycleGANConfig) -> None:
    """Add one ``--dashed-name`` flag per dataclass field (default None = keep the config's)."""
    for f in dataclasses.fields(cls):
        typ = {"int": int, "float": float, "str": str, "bool": _bool}[f.type if isinstance(f.type, str) else f.type.__name__]
        parser.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, help=f"(default {f.default!r})")


def config_from_args(args: argparse.Namespace, base: CycleGANConfig | None = None) -> CycleGANConfig:
    """A config from parsed flags; unset flags keep ``base``'s (or the dataclass') values."""
    cfg = dataclasses.replace(base) if base is not None else CycleGANConfig()
    for f in dataclasses.fields(CycleGANConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            setattr(cfg, f.name, v)
    cfg.validate()
    return cfg


def lr_factor(step: int, n_steps: int, n_steps_decay: int) -> float:
    """Constant for ``n_steps - n_steps_decay`` steps, then linear to 0 at ``n_steps`` (reference "linear" policy)."""
    start = n_steps - n_steps_decay
    if step < start or n_steps_decay == 0:
        return 1.0
    return max(0.0, 1.0 - (step - start) / float(n_steps_decay + 1))


# ----------------------------------------------------------------------------------------- data
_SEL = re.compile(r"^\s*(\w+)\s*(>=|<=|==|=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")


def selection_mask(labels: dict[str, np.ndarray], select: str) -> np.ndarray:
    """Boolean mask of the rows a selection string keeps (``"gender=0,age>=18"``; empty = all)."""
    n = len(next(iter(labels.values()))) if labels else 0
    mask = np.ones(n, dtype=bool)
    for term in filter(None, (t.strip() for t in select.split(","))):
        m = _SEL.match(term)
        if not m or m.group(1) not in labels:
            raise ValueError(f"bad selection term {term!r} (labels: {sorted(labels)})")
        key, op, val = m.group(1), m.group(2), float(m.group(3))
        col = labels[key].astype(np.float64)
        mask &= {"=": col == val, "==": col == val, ">=": col >= val, "<=": col <= val, "<": col < val, ">": col > val}[op]
    return mask


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    out = []
    for i in idx:
        with Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]].tobytes())) as im:
            out.append(np.asarray(im.convert("RGB")))
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def read_pack(
    path: str | os.PathLike[str], select: str = "", limit: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Read the selected faces of a face pack (``.npz``, no pickle) and its description.

    Two layouts are read: the project's packs (``faceswap_pipeline.train.packs``: concatenated
    JPEGs ``jpeg`` + ``offsets``, 1-D label arrays, UTF-8 JSON ``meta``) and plain packs with a
    uint8 ``images`` array ``(N, H, W, 3)``. The description is the embedded ``meta`` merged over a
    sidecar JSON (``<path>.json``, or ``<prefix>.json`` for ``<prefix>_train.npz``) when present.

    Returns:
        ``(images, labels, meta)``: images ``(n, H, W, 3)`` uint8 RGB of the selected faces (in
        pack order; at most ``limit``, then evenly spaced over the selection), labels a dict of the selected rows of every 1-D numeric
        array, and the description.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.files)
        jpeg = "jpeg" in keys and "offsets" in keys
        n = len(z["offsets"]) - 1 if jpeg else len(z["images"])
        labels = {k: z[k] for k in keys if k not in ("jpeg", "offsets", "images", "meta")
                  and z[k].ndim == 1 and len(z[k]) == n and z[k].dtype.kind in "iufb"}
        idx = np.flatnonzero(selection_mask(labels, select)) if select else np.arange(n)
        if limit and len(idx) > limit:  # evenly spaced over the selection (packs are name-sorted, i.e. by age)
            idx = idx[np.linspace(0, len(idx) - 1, limit).round().astype(np.int64)]
        if jpeg:
            images = _decode_jpegs(z["jpeg"], z["offsets"], idx)
        else:
            images = z["images"][idx]
            if images.shape[-1] != 3 and images.shape[1] == 3:
                images = images.transpose(0, 2, 3, 1)
        meta: dict[str, Any] = json.loads(z["meta"].tobytes().decode("utf-8")) if "meta" in keys else {}
    stem = re.sub(r"_(train|val|test)$", "", path.stem)
    for side in (path.with_suffix(".json"), path.with_name(stem + ".json")):
        if side.is_file():
            meta = {**json.loads(side.read_text(encoding="utf-8")), **meta}
            break
    return np.ascontiguousarray(images), {k: v[idx] for k, v in labels.items()}, meta


def load_domain(path: str, select: str, limit: int = 0) -> torch.Tensor:
    """Decode a pack's selected faces once into a ``(N, 3, H, W)`` uint8 tensor (CPU)."""
    images = read_pack(path, select, limit)[0]
    if len(images) == 0:
        raise ValueError(f"selection {select!r} keeps no face of {path}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


class DeviceStream:
    """Epoch-wise shuffled batches from a uint8 image tensor held on the device.

    Sampling draws permutations with the global torch generator of the data's device, so no value
    ever goes to the host. The state (permutation + position) is part of the checkpoint.

    Shape: ``next(B)`` -> (B, 3, H, W) uint8.
    """

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data
        self.perm = torch.randperm(len(data), device=data.device)
        self.pos = 0

    def next(self, b: int) -> torch.Tensor:
        """The next ``b`` images (a new permutation when fewer than ``b`` remain)."""
        if self.pos + b > len(self.data):
            self.perm = torch.randperm(len(self.data), device=self.data.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + b]
        self.pos += b
        if b > len(self.data):  # tiny data sets: sample with replacement
            idx = torch.randint(len(self.data), (b,), device=self.data.device)
        return self.data.index_select(0, idx)

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.perm = st["perm"].to(self.data.device)
        self.pos = int(st["pos"])


def augment(x_u8: torch.Tensor, flip: bool, jitter: int, channels_last: bool = False) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] with random horizontal flips and integer-pixel shifts, on the device.

    Jitter shifts each image by up to ``jitter`` px in x and y (reflection at the edges), via
    ``grid_sample`` at exact pixel positions, so no per-image host loop or sync is needed.

    Shape: (B, 3, H, W) uint8 -> (B, 3, H, W) float32 in [-1, 1].
    """
    x = x_u8.float().div_(127.5).sub_(1.0)
    b, _, h, w = x.shape
    if flip:
        m = torch.rand(b, device=x.device) < 0.5
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    if jitter > 0:
        shift = torch.randint(-jitter, jitter + 1, (b, 2), device=x.device).float()
        theta = torch.zeros(b, 2, 3, device=x.device)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = shift[:, 0] * 2.0 / w
        theta[:, 1, 2] = shift[:, 1] * 2.0 / h
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class ImagePool:
    """History of generated images (Shrivastava et al. 2017), the seed's pool of 50.

    Semantics of the reference implementation, per image and in order: while the pool is not
    full, the image is stored and returned; afterwards, with probability 1/2 a uniformly chosen
    stored image is returned and replaced by the new one, else the new image is returned. Here a
    whole batch is processed with tensor ops on the device (no host sync) with exactly these
    sequential semantics, including two images of one batch drawing the same slot.

    Shape: ``query``: (B, C, H, W) float -> (B, C, H, W) float32.
    """

    def __init__(self, size: int = 50) -> None:
        self.size = int(size)
        self.count = 0
        self.images: torch.Tensor | None = None  # (size + 1, C, H, W); the last row is a write sink

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return the images the discriminator should see for this batch of fakes."""
        images = images.detach().float()
        if self.size == 0:
            return images
        if self.images is None:
            self.images = torch.zeros((self.size + 1, *images.shape[1:]), device=images.device)
        k = min(len(images), self.size - self.count)
        if k > 0:
            self.images[self.count : self.count + k] = images[:k]
            self.count += k
        if k == len(images):
            return images
        rest = images[k:]
        b = len(rest)
        swap = torch.rand(b, device=rest.device) > 0.5
        slot = torch.randint(self.size, (b,), device=rest.device)
        ar = torch.arange(b, device=rest.device)
        same = (slot[:, None] == slot[None, :]) & swap[None, :]  # same[i, j]: j swaps into i's slot
        earlier = same & (ar[None, :] < ar[:, None])
        # latest earlier image j that put itself into i's slot (-1 if none)
        last_j = torch.where(earlier, ar[None, :], torch.full_like(earlier, -1, dtype=ar.dtype)).amax(1)
        stored = self.images.index_select(0, slot)
        prev = torch.where((last_j >= 0)[:, None, None, None], rest.index_select(0, last_j.clamp_min(0)), stored)
        out = torch.where(swap[:, None, None, None], prev, rest)
        later = same & (ar[None, :] > ar[:, None])
        final = swap & ~later.any(1)  # i is the last image written into its slot
        dest = torch.where(final, slot, torch.full_like(slot, self.size))
        self.images.index_copy_(0, dest, rest)
        return torch.cat([images[:k], out]) if k > 0 else out

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "count": self.count, "images": None if self.images is None else self.images.cpu()}

    def load_state_dict(self, st: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size, self.count = int(st["size"]), int(st["count"])
        self.images = None if st["images"] is None else st["images"].to(device)


# ------------------------------------------------------------------------------------ utilities
def _lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return (pred.float() - target).pow(2).mean()


def _raw(m: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while True:
        if hasattr(m, "_orig_mod"):
            m = m._orig_mod
        elif isinstance(m, nn.parallel.DistributedDataParallel):
            m = m.module
        else:
            return m


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda (this rank's GPU under torchrun) when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


@torch.no_grad()
def translate(gen: nn.Module, images_u8: torch.Tensor, batch: int = 64, amp: bool = False) -> torch.Tensor:
    """Run a generator on uint8 faces.

    Shape: (N, 3, H, W) uint8 -> (N, 3, H, W) float32 in [0, 1] (on the generator's device).
    """
    dev = next(gen.parameters()).device
    outs = []
    for i in range(0, len(images_u8), batch):
        x = images_u8[i : i + batch].to(dev).float().div(127.5).sub(1.0)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            y = gen(x)
        outs.append(y.float().add(1.0).mul(0.5).clamp(0, 1))
    return torch.cat(outs)


@torch.no_grad()
def pair_probs(attr: nn.Module, images01: torch.Tensor, head: str = "gender", classes: tuple[int, int] = (0, 1),
               batch: int = 256) -> torch.Tensor:
    """P(``classes[1]``) against ``classes[0]`` by one head of the attribute network (P(female) by default).

    Shape: (N, 3, H, W) float in [0, 1] -> (N,) float32.
    """
    dev = next(attr.parameters()).device
    cls = list(classes)
    out = [attr(images01[i : i + batch].to(dev).float())[head].float()[:, cls].softmax(1)[:, 1] for i in range(0, len(images01), batch)]
    return torch.cat(out) if out else torch.zeros(0)


def target_rate(gen: nn.Module, attr: nn.Module, images_u8: torch.Tensor, to_f: bool, amp: bool = False,
                head: str = "gender", classes: tuple[int, int] = (0, 1)) -> float:
    """Fraction of translated faces the attribute network puts in the target domain (``to_f``: domain f)."""
    p = pair_probs(attr, translate(gen, images_u8, amp=amp), head, classes)
    hit = p > 0.5 if to_f else p <= 0.5
    return float(hit.float().mean())


def _grid_png(rows: Sequence[Sequence[torch.Tensor]], path: Path) -> None:
    """Write rows of (N, 3, H, W) [-1, 1] tensors as one PNG (rows x (N*len(row)) tiles)."""
    import imageio.v3 as iio

    lines = []
    for row in rows:
        tiles = [t.detach().float().cpu() for t in row]
        n = len(tiles[0])
        lines.append(torch.cat([torch.cat([t[i] for t in tiles], 2) for i in range(n)], 2))
    img = torch.cat(lines, 1).add(1).mul(127.5).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, img)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file then rename (a crash never leaves a half checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a trainer checkpoint with ``weights_only=True`` (plain tensors/dicts only)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if ck.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path} is not a CycleGAN trainer checkpoint (format {ck.get('format')!r})")
    return ck


# -------------------------------------------------------------------------------------- trainer
class CycleGANTrainer:
    """One CycleGAN run: nets, optimisers, pools, data streams, logging and checkpoints.

    Args:
        cfg: the run's config.
        data_m, data_f: training faces, (N, 3, S, S) uint8 (this rank's shard).
        feat_net: frozen network with ``features(x)`` on [0, 1] images (identity loss); also used
            as the gender judge for validation when it returns a ``gender`` head.
        val_m, val_f: validation faces (N, 3, S, S) uint8, or None.
        rank, world: DDP rank and world size (1 = no DDP).
    """

    def __init__(
        self,
        cfg: CycleGANConfig,
        data_m: torch.Tensor,
        data_f: torch.Tensor,
        feat_net: nn.Module | None,
        val_m: torch.Tensor | None = None,
        val_f: torch.Tensor | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        from faceswap_pipeline.train.losses import PerceptualLoss

        cfg.validate()
        self.cfg, self.rank, self.world = cfg, rank, world
        self.device = resolve_device(cfg.device)
        from faceswap_pipeline.machine import resolve_amp

        self.amp = resolve_amp(cfg.amp, self.device.type)
        self.is_main = rank == 0
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        gk = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks}
        dk = {"ndf": cfg.ndf, "n_layers": cfg.n_layers}
        self.nets: dict[str, nn.Module] = {
            "G_m2f": ResnetGenerator(**gk),
            "G_f2m": ResnetGenerator(**gk),
            "D_m": PatchDiscriminator(**dk),
            "D_f": PatchDiscriminator(**dk),
        }
        for name, net in self.nets.items():
            _init_weights(net)
            if name.startswith("G_") and cfg.upsample_init == "bilinear":
                bilinear_init_transposed(net)
            if name.startswith("G_") and cfg.uk_phase_equal:
                equalize_transposed_phases(net)
            net.to(self.device, memory_format=mf).train()
        if feat_net is None and cfg.lambda_identity > 0:
            raise ValueError("the perceptual identity loss needs a feature network (lambda_identity > 0)")
        self.feat_net = None if feat_net is None else feat_net.to(self.device, memory_format=mf).eval().requires_grad_(False)
        layers = [int(s) for s in cfg.identity_layers.split(",") if s.strip()]
        self.perceptual = None if self.feat_net is None else PerceptualLoss(self.feat_net, layers=layers)

        fused = self.device.type == "cuda"
        gp = [p for n in ("G_m2f", "G_f2m") for p in self.nets[n].parameters()]
        dp = [p for n in ("D_m", "D_f") for p in self.nets[n].parameters()]
        self.opt_G = torch.optim.Adam(gp, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
        self.opt_D = torch.optim.Adam(dp, lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
        self.pool_m, self.pool_f = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)

        # wrappers used for training calls (DDP then compile); self.nets keeps the plain modules
        self.run: dict[str, nn.Module] = {}
        for name, net in self.nets.items():
            m: nn.Module = net
            if world > 1:
                ids = [self.device.index] if self.device.type == "cuda" else None
                m = nn.parallel.DistributedDataParallel(m, device_ids=ids, broadcast_buffers=False)
            if cfg.compile:
                m = torch.compile(m, dynamic=False)
            self.run[name] = m
        self.d_plain = {n: (torch.compile(self.nets[n], dynamic=False) if cfg.compile else self.nets[n]) for n in ("D_m", "D_f")}

        torch.manual_seed(cfg.seed * 1000 + 1 + rank)  # data order / augmentation / pool draws per rank
        self.stream_m = DeviceStream(data_m.to(self.device))
        self.stream_f = DeviceStream(data_f.to(self.device))
        self.val_m = val_m
        self.val_f = val_f
        self.step = 0
        self.pretrain_step = 0
        self.pairs_seen = 0
        self.wall_time_s = 0.0
        self.cpu_time_s = 0.0  # this process's CPU time spent in training steps (cumulative over resumes)
        self._pool_res = 0  # the resolution the image pools hold
        self._acc = torch.zeros(len(LOSS_NAMES), device=self.device)
        self._acc_n = 0
        self.history: list[dict[str, float]] = []
        self._writer = None
        self._grid_m: torch.Tensor | None = None
        self._grid_f: torch.Tensor | None = None
        self.command = ""  # the launching command line, recorded in checkpoints and the manifest

    # ---- one iteration
    def _set_lr(self) -> None:
        f = lr_factor(self.step, self.cfg.n_steps, self.cfg.n_steps_decay)
        for opt, lr in ((self.opt_G, self.cfg.lr), (self.opt_D, self.cfg.lr_d or self.cfg.lr)):
            for g in opt.param_groups:
                g["lr"] = lr * f

    def resolution(self) -> int:
        """The side the current step trains at (the curriculum's low resolution first, then ``image_size``)."""
        cfg = self.cfg
        return cfg.low_res if cfg.low_res and self.step < cfg.low_res_steps else cfg.image_size

    def _real_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next augmented male and female batches, ``(B, 3, s, s)`` float in [-1, 1] on the device.

        ``s`` is :meth:`resolution`; lower resolutions are area-downscaled from the stored faces.
        """
        cfg, b = self.cfg, self.cfg.batch_size
        res = self.resolution()
        out = []
        for stream in (self.stream_m, self.stream_f):
            x = augment(stream.next(b), cfg.flip, cfg.jitter, False)
            if res != x.shape[-1]:
                x = F.avg_pool2d(x, x.shape[-1] // res)
            out.append(x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x)
        if res != self._pool_res:  # a pool holds fakes of one resolution: start afresh at a switch
            if self._pool_res:
                log.info("step %d: resolution %d -> %d (image pools restart)", self.step, self._pool_res, res)
            self.pool_m, self.pool_f = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
            self._pool_res = res
        return out[0], out[1]

    def _guidance(self, fake: torch.Tensor, target: int) -> torch.Tensor:
        """Attribute guidance: cross-entropy of the frozen attribute net on randomly jittered fakes.

        The fakes (``(B, 3, s, s)`` in [-1, 1]) are flipped, shifted and scaled at random
        (differentiable bilinear resampling) before the classifier, so no fixed pixel pattern
        fools it, and with ``attr_grey`` seen in greyscale (the attribute net is 92 % accurate on
        grey adult faces vs 93 % on colour), so colour alone cannot move it; the loss compares only
        the pair's two classes (``attr_class_m`` / ``_f``).
        ``target``: 0 = domain m's class, 1 = domain f's.
        """
        cfg = self.cfg
        x = fake.float().add(1).mul(0.5)
        if cfg.attr_grey:  # ITU-R 601 luma, replicated: the classifier reads only shape and shading
            x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).expand(-1, 3, -1, -1)
        b = x.shape[0]
        if cfg.attr_blur > 0:  # one random sigma per batch, in pixels of a 128-px face
            from kornia.filters import gaussian_blur2d

            sigma = float(torch.rand((), device=x.device)) * cfg.attr_blur * x.shape[-1] / 128.0
            if sigma > 0.05:
                k = 2 * int(3 * sigma + 0.5) + 1
                x = gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")
        j = cfg.attr_jitter
        scale = 1.0 + (torch.rand(b, device=x.device) * 2 - 1) * j
        flip = torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=x.device)
        theta[:, 0, 0] = scale * flip
        theta[:, 1, 1] = scale
        theta[:, :, 2] = (torch.rand(b, 2, device=x.device) * 2 - 1) * 2 * j
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        logits = self.feat_net(x)[cfg.attr_head].float()[:, [cfg.attr_class_m, cfg.attr_class_f]]
        ce = F.cross_entropy(logits, torch.full((b,), target, device=x.device, dtype=torch.long), reduction="none")
        if cfg.attr_margin > 0:  # hinge: no gradient once p(target) >= margin (CE <= -log margin)
            ce = (ce + math.log(cfg.attr_margin)).clamp_min(0.0)
        return ce.mean()

    def _project_generators(self) -> None:
        if self.cfg.uk_phase_equal:
            for n in ("G_m2f", "G_f2m"):
                equalize_transposed_phases(self.nets[n])

    def pretrain_step_(self) -> torch.Tensor:
        """One generator warm-start step: both generators reproduce real faces of both domains (L1)."""
        self._set_lr()
        real_m, real_f = self._real_pair()
        x = torch.cat([real_m, real_f])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = F.l1_loss(self.run["G_m2f"](x).float(), x) + F.l1_loss(self.run["G_f2m"](x).float(), x)
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_G.step()
        self._project_generators()
        self.pretrain_step += 1
        return loss.detach()

    def train_step(self) -> None:
        """One optimisation step of the generators then the discriminators (reference order)."""
        cfg, r = self.cfg, self.run
        self._set_lr()
        b = cfg.batch_size
        real_m, real_f = self._real_pair()
        ac = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

        # generators: D frozen (its grads are not needed), D called without its DDP wrapper
        for n in ("D_m", "D_f"):
            self.nets[n].requires_grad_(False)
        with ac:
            fake_f, idt_f = r["G_m2f"](torch.cat([real_m, real_f])).split(b)  # idt_f = G_m2f(real_f)
            fake_m, idt_m = r["G_f2m"](torch.cat([real_f, real_m])).split(b)  # idt_m = G_f2m(real_m)
            rec_m = r["G_f2m"](fake_f)
            rec_f = r["G_m2f"](fake_m)
            loss_gan = _lsgan(self.d_plain["D_f"](fake_f), 1.0) + _lsgan(self.d_plain["D_m"](fake_m), 1.0)
            loss_cyc = cfg.lambda_cycle * (F.l1_loss(rec_m.float(), real_m) + F.l1_loss(rec_f.float(), real_f))
            if cfg.lambda_identity > 0 and self.perceptual is not None:
                loss_idt = cfg.lambda_identity * (
                    self.perceptual(idt_f.float().add(1).mul(0.5), real_f.add(1).mul(0.5))
                    + self.perceptual(idt_m.float().add(1).mul(0.5), real_m.add(1).mul(0.5))
                )
            else:
                loss_idt = torch.zeros((), device=self.device)
            if cfg.lambda_attr > 0:
                loss_attr = cfg.lambda_attr * (self._guidance(fake_f, 1) + self._guidance(fake_m, 0))
            else:
                loss_attr = torch.zeros((), device=self.device)
            loss_G = loss_gan + loss_cyc + loss_idt + loss_attr
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        self._project_generators()

        loss_D_m, loss_D_f = self._d_step(real_m, real_f, fake_m, fake_f)

        self._acc += torch.stack([loss_gan, loss_cyc, loss_idt, loss_attr, loss_D_m, loss_D_f]).detach().float()
        self._acc_n += 1
        self.step += 1
        self.pairs_seen += b * self.world

    def _d_step(self, real_m: torch.Tensor, real_f: torch.Tensor, fake_m: torch.Tensor, fake_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Discriminator update: real and pooled fake in one call (InstanceNorm is per sample)."""
        r, b = self.run, real_m.shape[0]
        ac = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        for n in ("D_m", "D_f"):
            self.nets[n].requires_grad_(True)
        pf = self.pool_f.query(fake_f)
        pm = self.pool_m.query(fake_m)
        with ac:
            sf_real, sf_fake = r["D_f"](torch.cat([real_f, pf.to(real_f.dtype)])).split(b)
            sm_real, sm_fake = r["D_m"](torch.cat([real_m, pm.to(real_m.dtype)])).split(b)
            loss_D_f = 0.5 * (_lsgan(sf_real, 1.0) + _lsgan(sf_fake, 0.0))
            loss_D_m = 0.5 * (_lsgan(sm_real, 1.0) + _lsgan(sm_fake, 0.0))
        self.opt_D.zero_grad(set_to_none=True)
        (loss_D_f + loss_D_m).backward()
        self.opt_D.step()
        return loss_D_m, loss_D_f

    def warmup_discriminators(self, n_steps: int) -> dict[str, float]:
        """Discriminator-only steps against the current (frozen) generators, e.g. after :meth:`warm_start`.

        Without them a warm-started run pits trained generators against random discriminators,
        so the first generator steps get a meaningless adversarial gradient. These steps are not
        training steps: the step count, learning-rate schedule and pairs seen are unchanged; their
        wall time is added. Returns the mean D losses. Note (measured on the CPU preview, see
        ``docs/benchmarks/cyclegan.md``): warm starts from the shipped generators lost target rate
        with or without this warm-up; keep full checkpoints to continue a run.
        """
        self._set_lr()
        ac = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        t0 = time.perf_counter()
        acc = torch.zeros(2, device=self.device)
        for _ in range(n_steps):
            real_m, real_f = self._real_pair()
            with torch.no_grad(), ac:
                fake_f = self.run["G_m2f"](real_m)
                fake_m = self.run["G_f2m"](real_f)
            acc += torch.stack(self._d_step(real_m, real_f, fake_m, fake_f)).detach().float()
        self.wall_time_s += time.perf_counter() - t0
        out = dict(zip(("D_m", "D_f"), (acc / max(1, n_steps)).tolist()))
        log.info("discriminator warm-up: %d steps, %.0f s, mean D_m=%.4g D_f=%.4g", n_steps, time.perf_counter() - t0, out["D_m"], out["D_f"])
        return out

    # ---- logging
    def pop_losses(self) -> dict[str, float]:
        """Mean losses since the last call (one host sync)."""
        vals = (self._acc / max(1, self._acc_n)).tolist()
        self._acc.zero_()
        self._acc_n = 0
        return dict(zip(LOSS_NAMES, vals))

    def writer(self):  # noqa: ANN201 - SummaryWriter or None
        if self._writer is None and self.cfg.tensorboard and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(self.cfg.run_dir) / "tb"))
        return self._writer

    def scalar(self, tag: str, value: float) -> None:
        w = self.writer()
        if w is not None:
            w.add_scalar(tag, value, self.step)

    @torch.no_grad()
    def save_grid(self, n: int = 6) -> Path:
        """PNG rows real_m | fake_f | rec_m | idt_m and real_f | fake_m | rec_f | idt_f on fixed faces."""
        if self._grid_m is None:
            src_m = self.val_m if self.val_m is not None else self.stream_m.data
            src_f = self.val_f if self.val_f is not None else self.stream_f.data
            self._grid_m = src_m[:n].to(self.device).float().div(127.5).sub(1)
            self._grid_f = src_f[:n].to(self.device).float().div(127.5).sub(1)
        g1, g2 = self.nets["G_m2f"], self.nets["G_f2m"]
        rm, rf = self._grid_m, self._grid_f
        ff, fm = g1(rm), g2(rf)
        rows = [[rm, ff, g2(ff), g2(rm)], [rf, fm, g1(fm), g1(rf)]]
        path = Path(self.cfg.run_dir) / "grids" / f"step{self.step:07d}.png"
        _grid_png(rows, path)
        return path

    def validate(self) -> dict[str, float]:
        """Target rates of both generators on the validation faces, judged by the attribute net."""
        if self.val_m is None or self.val_f is None or self.feat_net is None or not hasattr(self.feat_net, "gender"):
            return {}
        pair = (self.cfg.attr_class_m, self.cfg.attr_class_f)
        out = {
            "val/target_rate_m2f": target_rate(self.nets["G_m2f"], self.feat_net, self.val_m, True, self.amp, self.cfg.attr_head, pair),
            "val/target_rate_f2m": target_rate(self.nets["G_f2m"], self.feat_net, self.val_f, False, self.amp, self.cfg.attr_head, pair),
        }
        return out

    def warm_start(self, folder: str | os.PathLike[str]) -> None:
        """Initialise both generators from shipped weights (e.g. after a lost checkpoint).

        Loads ``cyclegan.male2female`` -> ``G_m2f`` and ``cyclegan.female2male`` -> ``G_f2m``
        (sha256-verified, int8 dequantised) and continues their bookkeeping: step count (so the
        learning-rate schedule goes on where it was), pairs seen, wall time, target-rate history
        and command chain from the manifest. Discriminators, Adam moments and image pools start
        fresh: follow with :meth:`warmup_discriminators` (``d_warmup_steps``).
        """
        from faceswap_pipeline.weights import load_state_dict

        entries: dict[str, dict[str, Any]] = {}
        for name, direction in zip(("G_m2f", "G_f2m"), self.cfg.directions()):
            state, entries[name] = load_state_dict(f"cyclegan.{direction}", folder)
            self.nets[name].load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        tr = entries["G_m2f"].get("training", {})  # one export wrote both: same bookkeeping
        self.step = int(tr.get("steps", 0))
        self.pairs_seen = int(tr.get("pairs_seen", self.step))
        self.wall_time_s = float(tr.get("wall_time_s", 0.0))
        self.history = [dict(h) for h in tr.get("target_rate_history", [])]
        self.command = str(tr.get("command", ""))
        log.info("warm start from %s: generators at step %d, fresh discriminators/optimisers", folder, self.step)

    # ---- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (weights_only-loadable)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        st: dict[str, Any] = {
            "format": CKPT_FORMAT,
            "config": asdict(self.cfg),
            "step": self.step,
            "pretrain_step": self.pretrain_step,
            "pairs_seen": self.pairs_seen,
            "wall_time_s": self.wall_time_s,
            "cpu_time_s": self.cpu_time_s,
            "pool_res": self._pool_res,
            "opts": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()},
            "scheds": {"policy": "linear", "lr": self.cfg.lr, "n_steps": self.cfg.n_steps, "n_steps_decay": self.cfg.n_steps_decay},
            "pool": {"m": self.pool_m.state_dict(), "f": self.pool_f.state_dict()},
            "streams": {"m": self.stream_m.state_dict(), "f": self.stream_f.state_dict()},
            "rng": rng,
            "history": [dict(h) for h in self.history],
            "world": self.world,
            "command": self.command,
        }
        for n, net in self.nets.items():
            st[n] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        return st

    def load_state_dict(self, st: dict[str, Any]) -> None:
        for n, net in self.nets.items():
            net.load_state_dict(st[n])
        self.opt_G.load_state_dict(st["opts"]["G"])
        self.opt_D.load_state_dict(st["opts"]["D"])
        self.pool_m.load_state_dict(st["pool"]["m"], self.device)
        self.pool_f.load_state_dict(st["pool"]["f"], self.device)
        if int(st.get("world", 1)) == self.world:
            self.stream_m.load_state_dict(st["streams"]["m"])
            self.stream_f.load_state_dict(st["streams"]["f"])
            torch.set_rng_state(st["rng"]["torch"])
            if "cuda" in st["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(st["rng"]["cuda"], self.device)
        else:
            log.warning("checkpoint world size %s != %s: data order restarts", st.get("world"), self.world)
        self.step = int(st["step"])
        self.pretrain_step = int(st.get("pretrain_step", 0))
        self.pairs_seen = int(st["pairs_seen"])
        self.wall_time_s = float(st["wall_time_s"])
        self.cpu_time_s = float(st.get("cpu_time_s", 0.0))
        self._pool_res = int(st.get("pool_res", self.resolution()))
        self.history = list(st.get("history", []))
        self.command = str(st.get("command", ""))

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        path = Path(path) if path else Path(self.cfg.run_dir) / "last.pt"
        if self.is_main:
            atomic_save(self.state_dict(), path)
        return path

    # ---- loop
    def fit(self, max_steps: int | None = None, on_log: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
        """Train until ``n_steps`` (or ``max_steps`` more steps, or ``max_minutes``); save and return a summary."""
        cfg = self.cfg
        run_dir = Path(cfg.run_dir)
        if self.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
        end = cfg.n_steps if max_steps is None else min(cfg.n_steps, self.step + max_steps)
        t0 = time.perf_counter()
        wall0 = self.wall_time_s
        c0, cpu0 = time.process_time(), self.cpu_time_s
        t_log, steps_log = t0, self.step
        stop_reason = "n_steps"
        stop = {"signal": 0}

        def _on_signal(signum: int, frame: Any) -> None:  # finish the step, save, return
            stop["signal"] = signum

        import signal
        import threading

        old = {}
        if threading.current_thread() is threading.main_thread():
            old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        while self.pretrain_step < cfg.g_pretrain_steps and not stop["signal"]:
            loss = self.pretrain_step_()
            self.wall_time_s = wall0 + time.perf_counter() - t0
            self.cpu_time_s = cpu0 + time.process_time() - c0
            if self.pretrain_step % cfg.log_every == 0 or self.pretrain_step == cfg.g_pretrain_steps:
                log.info("generator warm start %d/%d: L1 %.4g", self.pretrain_step, cfg.g_pretrain_steps, float(loss))
            if cfg.ckpt_every and self.pretrain_step % cfg.ckpt_every == 0:
                self.save()
        while self.step < end and not stop["signal"]:
            self.train_step()
            self.wall_time_s = wall0 + time.perf_counter() - t0
            self.cpu_time_s = cpu0 + time.process_time() - c0
            s = self.step
            if s % cfg.log_every == 0 or s == end:
                losses = self.pop_losses()  # the only per-interval host sync
                now = time.perf_counter()
                rate = (s - steps_log) * cfg.batch_size * self.world / max(1e-9, now - t_log)
                t_log, steps_log = now, s
                rec = {"step": s, **losses, "pairs_per_s": rate, "lr": cfg.lr * lr_factor(s, cfg.n_steps, cfg.n_steps_decay)}
                if self.is_main:
                    for k, v in rec.items():
                        if k != "step":
                            self.scalar(("loss/" if k in LOSS_NAMES else "speed/") + k, v)
                    log.info("step %d %s", s, " ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "step"))
                if on_log is not None:
                    on_log(rec)
            if self.is_main and cfg.grid_every and s % cfg.grid_every == 0:
                self.save_grid()
            if self.is_main and cfg.val_every and (s % cfg.val_every == 0 or s == end):
                v = self.validate()
                if v:
                    for k, val in v.items():
                        self.scalar(k, val)
                    self.history.append({"step": s, "pairs_seen": self.pairs_seen, "wall_time_s": self.wall_time_s,
                                         "cpu_time_s": self.cpu_time_s, **v})
                    print(json.dumps({"step": s, **{k.split("/")[-1]: round(val, 4) for k, val in v.items()}}), flush=True)
            if cfg.ckpt_every and s % cfg.ckpt_every == 0:
                self.save()
            if cfg.max_minutes and (time.perf_counter() - t0) / 60.0 >= cfg.max_minutes:
                stop_reason = "max_minutes"
                break
            if cfg.max_cpu_minutes and self.cpu_time_s / 60.0 >= cfg.max_cpu_minutes:
                stop_reason = "max_cpu_minutes"
                break
            if stop["signal"]:
                stop_reason = f"signal {stop['signal']}"
                log.info("stopping on signal %d at step %d", stop["signal"], self.step)
                break
        for sig, handler in old.items():
            signal.signal(sig, handler)
        path = self.save()
        if self.is_main:
            if self.history and self.history[-1]["step"] != self.step:
                v = self.validate()
                if v:
                    self.history.append({"step": self.step, "pairs_seen": self.pairs_seen, "wall_time_s": self.wall_time_s, **v})
                    self.save()
            if cfg.grid_every:
                self.save_grid()
            _plot_history(self.history, run_dir / "target_rate.png")
            if self._writer is not None:
                self._writer.flush()
        if stop["signal"]:
            stop_reason = f"signal {stop['signal']}"
        return {"step": self.step, "pairs_seen": self.pairs_seen, "wall_time_s": self.wall_time_s, "cpu_time_s": self.cpu_time_s,
                "stop": stop_reason, "checkpoint": str(path)}


def bilinear_init_transposed(net: nn.Module) -> None:
    """Make every stride-2, 3x3 transposed conv of ``net`` start as bilinear upsampling of a 1x1 conv.

    A ``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` computes each of its four output phases
    from different kernel taps (1, 2, 2 and 4 of them), so a random kernel gives the phases
    different gains: the 2-px checkerboard. Here each kernel is ``W[cin, cout] * outer(t, t)`` with
    ``t = (0.5, 1, 0.5)`` and ``W`` the layer's current (random) weights' centre tap, which is exactly
    a 1x1 conv followed by bilinear x2 upsampling: every phase has gain 1 at init (ICNR's idea for
    sub-pixel convs, Aitken et al. 2017, applied to the seed's ``uk`` layers).
    """
    t = torch.tensor([0.5, 1.0, 0.5])
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (3, 3) and m.stride == (2, 2):
            with torch.no_grad():
                w = m.weight[:, :, 1:2, 1:2].clone()
                m.weight.copy_(w * torch.outer(t, t).to(w))


# taps of a 3x3, stride-2, padding-1 transposed kernel that feed each output phase (row parity, col parity)
_PHASE_TAPS = {(0, 0): [(1, 1)], (0, 1): [(1, 0), (1, 2)], (1, 0): [(0, 1), (2, 1)], (1, 1): [(0, 0), (0, 2), (2, 0), (2, 2)]}


@torch.no_grad()
def transposed_phase_gains(conv: nn.ConvTranspose2d) -> torch.Tensor:
    """DC gain of each output phase of a 3x3 / stride-2 transposed conv. Shape: (4, C_in, C_out)."""
    w = conv.weight
    return torch.stack([sum(w[:, :, a, b] for a, b in taps) for taps in _PHASE_TAPS.values()])


@torch.no_grad()
def equalize_transposed_phases(net: nn.Module) -> None:
    """Project every 3x3 / stride-2 transposed conv of ``net`` so its four output phases have equal DC gain.

    Each phase's taps are shifted by the same amount so that its gain becomes the mean of the four
    (the layer's average gain is unchanged). A flat input then gives a flat output: the 2-px
    checkerboard cannot appear, while every tap stays trainable (the seed's ``uk`` layers are kept;
    this is the projection step of a constrained optimisation, applied after each optimiser step).
    """
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (3, 3) and m.stride == (2, 2):
            gains = transposed_phase_gains(m)
            target = gains.mean(0)
            for (taps, g) in zip(_PHASE_TAPS.values(), gains):
                delta = (target - g) / len(taps)
                for a, b in taps:
                    m.weight[:, :, a, b] += delta


def _init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """Reference CycleGAN init: conv weights N(0, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Target rate vs step as a small PNG (drawn with numpy, no matplotlib needed)."""
    if len(history) < 1:
        return
    import imageio.v3 as iio

    w, h, pad = 480, 240, 20
    img = np.full((h, w, 3), 255, np.uint8)
    img[h - pad, pad : w - pad] = 0
    img[pad : h - pad, pad] = 0
    for y in (0.5, 0.9):
        img[int(h - pad - y * (h - 2 * pad)), pad : w - pad : 4] = 150
    smax = max(1, max(r["step"] for r in history))
    for key, col in (("val/target_rate_m2f", (220, 40, 40)), ("val/target_rate_f2m", (40, 40, 220))):
        pts = [(r["step"], r[key]) for r in history if key in r]
        for (s0, v0), (s1, v1) in zip(pts, pts[1:] or pts):
            for t in np.linspace(0, 1, 50):
                x = int(pad + ((1 - t) * s0 + t * s1) / smax * (w - 2 * pad - 1))
                y = int(h - pad - ((1 - t) * v0 + t * v1) * (h - 2 * pad - 1))
                img[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = col
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, img)


# ----------------------------------------------------------------------------------- run setup
def _init_distributed(device_pref: str) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = resolve_device(device_pref).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def load_attribute_net(cfg: CycleGANConfig) -> nn.Module:
    """The trained attribute network named by the config (sha256-verified)."""
    from faceswap_pipeline.weights import load_model

    return load_model(cfg.attr_name, folder=cfg.attr_weights or None)


def build_trainer(cfg: CycleGANConfig) -> CycleGANTrainer:
    """Load data (this rank's shard) and the attribute network, build the trainer."""
    rank, world = _init_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    feat = None if (cfg.lambda_identity == 0 and cfg.lambda_attr == 0 and not cfg.attr_weights) else load_attribute_net(cfg)
    data = {}
    for side, path, select, cls in (("m", cfg.pack_m, cfg.select_m, cfg.attr_class_m), ("f", cfg.pack_f, cfg.select_f, cfg.attr_class_f)):
        images, labels, _ = read_pack(path, select)
        if len(images) == 0:
            raise ValueError(f"selection {select!r} keeps no face of {path}")
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        keep = np.arange(len(x))
        if cfg.attr_filter > 0:
            if feat is None:
                raise ValueError("attr_filter needs the attribute network (attr_weights)")
            other = cfg.attr_class_f if side == "m" else cfg.attr_class_m
            p = pair_probs(feat.eval(), x.float() / 255.0, cfg.attr_head, (other, cls)).numpy()
            keep = np.flatnonzero(p >= cfg.attr_filter)
            log.info("domain %s: the attribute net keeps %d of %d faces (p >= %.2f)", side, len(keep), len(x), cfg.attr_filter)
        idx = balanced_index({k: v[keep] for k, v in labels.items()}, cfg.balance, cfg.seed) if cfg.balance else np.arange(len(keep))
        data[side] = x[torch.from_numpy(keep[idx])][rank::world]
    val_m = val_f = None
    if cfg.val_pack_m and cfg.val_pack_f:
        val_m = load_domain(cfg.val_pack_m, cfg.val_select_m or cfg.select_m, cfg.n_val)
        val_f = load_domain(cfg.val_pack_f, cfg.val_select_f or cfg.select_f, cfg.n_val)
    log.info("rank %d/%d: %d %s / %d %s training faces", rank, world, len(data["m"]), cfg.domain_m, len(data["f"]), cfg.domain_f)
    return CycleGANTrainer(cfg, data["m"], data["f"], feat, val_m, val_f, rank, world)


def balanced_index(labels: dict[str, np.ndarray], key: str, seed: int = 0) -> np.ndarray:
    """Indices that give every value of ``labels[key]`` the count of the most common one.

    Each group keeps all its rows once, and smaller groups are topped up by drawing rows again at
    random (seeded), so, e.g., a race domain trains on as many women as men.
    """
    if key not in labels:
        raise ValueError(f"cannot balance by {key!r}: labels are {sorted(labels)}")
    col = labels[key]
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(col == v) for v in np.unique(col)]
    n = max(len(g) for g in groups)
    idx = np.concatenate([np.concatenate([g, rng.choice(g, n - len(g), replace=True)]) for g in groups])
    return np.sort(idx)


# -------------------------------------------------------------------------------------- export
def export(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = "weights",
    storage: str = "int8",
    *,
    metrics: dict[str, dict[str, Any]] | None = None,
    framing: dict[str, Any] | None = None,
    command: str = "",
    data: str = "",
    split: str = "faceswap_pipeline.train.splits (sha1 of file name, 10% validation)",
    machine: str | None = None,
    feature_net: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write both generators of a checkpoint as shipped weights and register them in the manifest.

    Files: ``cyclegan_male2female.safetensors`` / ``cyclegan_female2male.safetensors`` in
    ``out_dir``; manifest names ``cyclegan.male2female`` / ``cyclegan.female2male``.

    Args:
        checkpoint: a trainer checkpoint (``last.pt``).
        out_dir: the weights folder.
        storage: ``int8`` (per-channel scales, dequantised at load), ``fp16`` or ``fp32``.
        metrics: per direction (``"male2female"`` / ``"female2male"``) metric dicts.
        framing: the crop framing the training faces were made with (the packs' sidecar JSON).
        command, data, split, machine: provenance recorded under ``training``.
        feature_net: the attribute network used for the perceptual identity loss and the target rate
            (name, folder, sha256).

    Returns:
        ``{"male2female": path, "female2male": path}``.
    """
    from faceswap_pipeline.weights import register_weights, save_weights

    ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    kwargs = {"ngf": cfg["ngf"], "n_blocks": cfg["n_blocks"]}
    out: dict[str, Path] = {}
    names = (f"{cfg.get('domain_m', 'male')}2{cfg.get('domain_f', 'female')}", f"{cfg.get('domain_f', 'female')}2{cfg.get('domain_m', 'male')}")
    for direction, net in zip(names, ("G_m2f", "G_f2m")):
        fname = f"cyclegan_{direction}.safetensors"
        path = Path(out_dir) / fname
        sha = save_weights(ck[net], path, arch="cyclegan_resnet", kwargs=kwargs, storage=storage)
        entry = {
            "file": fname,
            "sha256": sha,
            "arch": "cyclegan_resnet",
            "kwargs": kwargs,
            "storage": storage,
            "io": {"range": [-1, 1], "size": int(cfg["image_size"]), "layout": "(B, 3, H, W) RGB"},
            "framing": framing or {},
            "training": {
                "command": command,
                "data": data,
                "split": split,
                "steps": int(ck["step"]),
                "batch_size": int(cfg["batch_size"]),
                "pairs_seen": int(ck["pairs_seen"]),
                "wall_time_s": round(float(ck["wall_time_s"]), 1),
                "machine": machine or describe_machine(),
                "seed": int(cfg["seed"]),
                "config": cfg,
                "identity_feature_net": feature_net or {},
                "target_rate_history": ck.get("history", []),
            },
            "metrics": (metrics or {}).get(direction, {}),
        }
        register_weights(f"cyclegan.{direction}", entry, folder=out_dir)
        out[direction] = path
    return out


def evaluate_export(
    checkpoint: str | os.PathLike[str],
    weights_folder: str | os.PathLike[str],
    attr: nn.Module,
    val_m: torch.Tensor,
    val_f: torch.Tensor,
    identity_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    n_identity: int = 200,
    sheet_path: str | os.PathLike[str] | None = None,
    sheet_n: int = 32,
    judge: Any | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics of the shipped (stored) generators against the checkpoint's fp32 ones on validation faces.

    With ``judge`` (:class:`~faceswap_pipeline.train.judge.Judge`) each direction also gets the
    independent judge's target rate and the quality figures under ``"judge"`` (realism against
    the other domain's validation faces).

    For each direction: target rate of fp32 and stored models, mean |stored - fp32| of outputs
    (in [0, 1] pixel units), max abs difference, and optionally a mean identity distance
    (``identity_fn(real01, fake01)``) on the first ``n_identity`` faces. With ``sheet_path``, a
    contact sheet of the first ``sheet_n`` male faces before/after the stored ``male2female``
    generator is written (rows of 8 faces over their translations, 128 px tiles).
    """
    from faceswap_pipeline.weights import load_model

    ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    res: dict[str, dict[str, Any]] = {}
    dm, df = cfg.get("domain_m", "male"), cfg.get("domain_f", "female")
    head, pair = cfg.get("attr_head", "gender"), (int(cfg.get("attr_class_m", 0)), int(cfg.get("attr_class_f", 1)))
    for direction, net, src, female in ((f"{dm}2{df}", "G_m2f", val_m, True), (f"{df}2{dm}", "G_f2m", val_f, False)):
        ref = ResnetGenerator(ngf=cfg["ngf"], n_blocks=cfg["n_blocks"]).eval()
        ref.load_state_dict(ck[net])
        stored = load_model(f"cyclegan.{direction}", folder=weights_folder)
        y_ref = translate(ref, src)
        y_st = translate(stored, src)
        p_ref = pair_probs(attr, y_ref, head, pair)
        p_st = pair_probs(attr, y_st, head, pair)
        p_src = pair_probs(attr, src.float() / 255.0, head, pair)
        from faceswap_pipeline.train import evaluate

        voted = evaluate.target_rate(attr, y_st, df if female else dm, voting=True)
        hit = (lambda p: p > 0.5) if female else (lambda p: p <= 0.5)
        d = (y_st - y_ref).abs()
        m: dict[str, Any] = {
            "n_val_faces": len(src),
            "val_target_rate": round(float(hit(p_st).float().mean()), 4),
            "val_target_rate_voting45": round(float(voted), 4),
            "val_target_rate_fp32": round(float(hit(p_ref).float().mean()), 4),
            "val_target_rate_of_unchanged_input": round(float(hit(p_src).float().mean()), 4),
            "stored_vs_fp32_mean_abs_diff": float(d.mean()),
            "stored_vs_fp32_max_abs_diff": float(d.max()),
            "pixel_range_of_diffs": "[0, 1] image units",
        }
        if identity_fn is not None:
            k = min(n_identity, len(src))
            m["mean_identity_distance"] = round(float(identity_fn(src[:k].float() / 255.0, y_st[:k])), 4)
            m["n_identity_faces"] = k
        if judge is not None:
            from faceswap_pipeline.train.judge import describe

            to8 = lambda t: (t.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
            src8 = src.permute(0, 2, 3, 1).numpy()
            other = (val_f if female else val_m).permute(0, 2, 3, 1).numpy()
            m["judge"] = judge.score(src8, to8(y_st), direction, describe(other, judge.rescale)[0])
        if sheet_path is not None and net == "G_m2f":
            contact_sheet(src[:sheet_n].float() / 255.0, y_st[:sheet_n], sheet_path)
            m["contact_sheet"] = str(sheet_path)
        res[direction] = m
    return res


def contact_sheet(before01: torch.Tensor, after01: torch.Tensor, path: str | os.PathLike[str], cols: int = 8, gap: int = 2) -> None:
    """PNG of faces (rows of ``cols`` inputs over their outputs), 256-colour palette to stay small.

    Shape: two (N, 3, S, S) float in [0, 1].
    """
    from PIL import Image

    n, _, h, w = before01.shape
    rows = -(-n // cols)
    sheet = np.full((rows * 2 * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    to8 = lambda t: (t.detach().float().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = gap + c * (w + gap), gap + 2 * r * (h + gap)
        sheet[y : y + h, x : x + w] = to8(before01[i])
        sheet[y + h + gap : y + 2 * h + gap, x : x + w] = to8(after01[i])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


# ----------------------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faceswap-pipeline train cyclegan", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="JSON config file (flags override it)")
    p.add_argument("--resume", help="checkpoint to continue from (its config; flags override, e.g. --n-steps)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    p.add_argument("--export", metavar="CKPT", help="export a checkpoint's generators instead of training")
    p.add_argument("--out-dir", default="weights", help="weights folder for --export")
    p.add_argument("--storage", default="int8", choices=["int8", "fp16", "fp32"])
    p.add_argument("--eval-n", type=int, default=0, help="--export: validation faces per direction (0 = all)")
    p.add_argument("--identity-n", type=int, default=200, help="--export: faces for the dlib identity distance")
    p.add_argument("--sheet", default="", help="--export: write a before/after contact sheet PNG of male val faces here")
    add_config_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (``faceswap-pipeline train cyclegan ...``). Returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    base = None
    if args.export:
        return _main_export(args)
    if args.resume:
        base = CycleGANConfig(**load_checkpoint(args.resume)["config"])
    elif args.config:
        base = CycleGANConfig(**json.loads(Path(args.config).read_text(encoding="utf-8")))
    cfg = config_from_args(args, base)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer = build_trainer(cfg)
    launch = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    if args.resume:
        trainer.load_state_dict(load_checkpoint(args.resume))
        trainer.cfg = cfg  # flags given at resume (n_steps, max_minutes ...) apply from here on
        log.info("resumed %s at step %d", args.resume, trainer.step)
        trainer.command = f"{trainer.command} ; {launch}" if trainer.command else launch
    else:
        if cfg.init_generators:
            trainer.warm_start(cfg.init_generators)
            if cfg.d_warmup_steps:
                trainer.warmup_discriminators(cfg.d_warmup_steps)
        trainer.command = f"{trainer.command} ; {launch}" if trainer.command else launch
    summary = trainer.fit(max_steps=args.max_steps)
    if trainer.is_main:
        print(json.dumps(summary), flush=True)
    if trainer.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _main_export(args: argparse.Namespace) -> int:
    ck = load_checkpoint(args.export)
    cfg = config_from_args(args, CycleGANConfig(**ck["config"]))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    meta = read_pack(cfg.pack_m)[2] if cfg.pack_m and Path(cfg.pack_m).is_file() else {}
    framing = meta.get("framing", {k: meta[k] for k in ("rescale", "size", "detector", "upsample") if k in meta})
    command = str(ck.get("command", ""))
    paths = export(args.export, args.out_dir, args.storage, framing=framing, command=command, feature_net=None,
                   data=f"{cfg.pack_m} [{cfg.select_m}] / {cfg.pack_f} [{cfg.select_f}]")
    try:
        from faceswap_pipeline.weights import model_entry

        feat = {"name": cfg.attr_name, "folder": cfg.attr_weights, "sha256": model_entry(cfg.attr_name, cfg.attr_weights or None)["sha256"]}
    except Exception:  # noqa: BLE001 - provenance only
        feat = {"name": cfg.attr_name, "folder": cfg.attr_weights}
    if cfg.val_pack_m and cfg.val_pack_f:
        n = args.eval_n or 0
        val_m = load_domain(cfg.val_pack_m, cfg.val_select_m or cfg.select_m, n)
        val_f = load_domain(cfg.val_pack_f, cfg.val_select_f or cfg.select_f, n)
        from faceswap_pipeline.train.judge import JUDGE_NAME, Judge
        from faceswap_pipeline.weights import has_model

        judge = Judge(rescale=tuple(framing.get("rescale", CHIP_RESCALE))) if has_model(JUDGE_NAME) else None
        metrics = evaluate_export(args.export, args.out_dir, load_attribute_net(cfg), val_m, val_f,
                                  identity_fn=_identity_fn(framing), n_identity=args.identity_n, sheet_path=args.sheet or None,
                                  judge=judge)
        export(args.export, args.out_dir, args.storage, metrics=metrics, framing=framing, command=command, feature_net=feat,
               data=f"{cfg.pack_m} [{cfg.select_m}] / {cfg.pack_f} [{cfg.select_f}]")
        print(json.dumps(metrics, indent=2), flush=True)
    print(json.dumps({k: str(v) for k, v in paths.items()}), flush=True)
    return 0


def _identity_fn(framing: dict[str, Any] | None = None) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """Mean dlib face-descriptor distance between real and translated faces (``train/evaluate.py``)."""
    from faceswap_pipeline.train import evaluate

    rescale = tuple((framing or {}).get("rescale", CHIP_RESCALE))
    return lambda a, b: float(np.mean(evaluate.identity_distance(a, b, rescale)))


if __name__ == "__main__":
    sys.exit(main())

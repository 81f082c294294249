"""Train the SRResNet super-resolution stage (step 4 of the original face-swap design).

Data: random ``patch`` x ``patch`` HR patches (default 64, as in the original design) from UTKFace face chips
of the project's *train* split (``faceswap_pipeline.train.splits.is_validation`` faces are never
used) and from the *training* part of a scene folder (default: the Sun & Hays 80). The LR input
is the HR patch shrunk by ``scale`` with antialiased bicubic (the SR literature's degradation,
like MATLAB ``imresize``) and quantised to 8 bits. Patches get random flips and 90-degree
rotations.

Held-out scenes: after sorting the scene file names, every ``scene_holdout_every``-th one
(indices 0, 5, 10, ... with the default 5, i.e. 16 of 80) is held out for evaluation and never
trained on; :func:`split_scenes` is the single definition used by the trainer and the benchmark.

Degradation (``--degrade``): ``bicubic`` (the above, what the first ``srresnet.x4`` was trained
on) or ``mix``: the BSRGAN / Real-ESRGAN-style random chain of
:mod:`faceswap_pipeline.train.degrade` (blur kernels, resize methods, noise, JPEG in random
order, a faint 2-/4-px grid, a share of clean samples), so the net learns to clean the inputs the
pipeline really gives it instead of sharpening their artefacts. ``--gen-fraction`` replaces that
share of the face patches by real CycleGAN generator outputs (:class:`~faceswap_pipeline.train.degrade.GeneratorLR`)
made from the 128 px faces of a train-split face pack (``--gen-pack``).

Warm start (``--init-from``): a manifest name (``srresnet.x4``) or a ``last.pt``; every tensor
whose name and shape match is copied (an x2 net takes the x4's head, trunk, first upsampling
stage and tail). ``--icnr-project`` then projects the sub-pixel convolutions onto the ICNR form
(nearest-neighbour upsampling, no checkerboard) before fine-tuning.

Loss: L1 (or MSE) between SR and HR, plus optionally ``perceptual_weight`` times a perceptual
loss in the feature space of the project's own attribute network (``attributes.v1``). No
pretrained VGG-16 can be downloaded in this project, so the original design's VGG perceptual loss is
replaced by this; with weight 0 (default) the term is off and nothing is loaded.

Run::

    faceswap-pipeline train srresnet --faces DATA/utkface/train --scenes DATA/sr_scenes/CSun_Hays80 \\
        --out runs/srresnet_x4 --steps 3000 --max-minutes 40 --threads 1 \\
        --export weights/srresnet_x4.safetensors --export-name srresnet.x4

Checkpoints (``out/last.pt``) are written every ``ckpt_every`` steps and on a clean stop
(``--max-minutes`` or ``--stop-at``); ``--resume`` continues from one bit-exactly (model,
optimizer, step, and the data sampler's random state are all saved). TensorBoard scalars go to
``out/tb``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from faceswap_pipeline.machine import describe_machine
from faceswap_pipeline.ops.geometry import resize
from faceswap_pipeline.train import config
from faceswap_pipeline.train.checkpoint import atomic_save
from faceswap_pipeline.train.degrade import DegradeConfig
from faceswap_pipeline.train.loop import RunClock, StopOnSignal
from faceswap_pipeline.train.runlog import RunWriter
from faceswap_pipeline.train.splits import is_validation

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class SRConfig:
    """Every setting of an SRResNet training run (saved as ``out/config.json``)."""

    faces: str = config.helped("", "UTKFace-style folder of face chips (train split used only)")
    scenes: str = config.helped("", "folder of scene photos (held-out subset excluded)")
    out: str = config.helped("runs/srresnet_x4", "run folder: config, checkpoints, TensorBoard, log")
    scale: int = config.helped(4, "2 or 4")
    n_blocks: int = config.helped(16, "residual blocks (original design: 16)")
    nf: int = config.helped(64, "filters (original design: 64)")
    variant: str = config.helped("srresnet", "srresnet (BN + PReLU) | edsr (no BN, residual scaling)")
    res_scale: float = config.helped(0.0, "0 = variant default (1.0 srresnet, 0.1 edsr)")
    img_skip: str = config.helped("bicubic", "none (Ledig) | bicubic (a=-0.75) | bicubic_aa (a=-0.5) | bilinear: add the interpolated input to the output")
    degrade: str = config.helped("bicubic", "LR inputs: bicubic (clean) | mix (random blur/resize/noise/JPEG/grid chain)")
    clean_fraction: float = config.helped(0.3, "with degrade mix: share of samples left as clean antialiased bicubic LR")
    gen_fraction: float = config.helped(0.0, "share of face patches whose LR is a real CycleGAN output (needs gen_pack)")
    gen_pack: str = config.helped("", "train-split face pack (.npz, 128 px crops) for the generator augmentation")
    gen_weights_dir: str = config.helped("", "folder of the generators' manifest (empty = default weights folder)")
    init_from: str = config.helped("", "warm start: manifest name (e.g. srresnet.x4) or a checkpoint path; matching tensors are copied")
    icnr_project: bool = config.helped(False, "after init_from, project the sub-pixel convs onto ICNR (no checkerboard)")
    init_reset: str = config.helped("", "comma-separated parameter-name prefixes left as initialised by init_from (e.g. tail: start at bicubic)")
    patch: int = config.helped(64, "HR patch side (original design: 64)")
    batch_size: int = 16
    steps: int = config.helped(3000, "total optimisation steps (the lr schedule spans these)")
    lr: float = config.helped(3e-4, "Adam peak learning rate")
    warmup: int = config.helped(100, "linear warm-up steps, then cosine decay to lr * min_lr_ratio")
    min_lr_ratio: float = 0.02
    loss: str = config.helped("l1", "l1 | mse")
    perceptual_weight: float = config.helped(0.0, "0 disables the perceptual term")
    perceptual_model: str = config.helped("attributes.v1", "manifest name of the feature network")
    perceptual_weights_dir: str = config.helped("", 'folder of that manifest ("" = default weights folder)')
    perceptual_layers: str = config.helped("0,1", "which AttributeNet.features() entries to compare")
    scene_fraction: float = config.helped(0.25, "share of patches drawn from scenes (rest: faces)")
    scene_holdout_every: int = config.helped(5, "hold out scenes with sorted index % this == 0")
    val_faces: int = config.helped(32, "validation faces (validation split) scored during training")
    val_every: int = 500
    ckpt_every: int = 250
    log_every: int = 25
    seed: int = 0
    threads: int = config.helped(0, "torch.set_num_threads (0 = torch's default)")
    device: str = "cpu"
    bf16: bool = config.helped(False, "bf16 autocast for the forward pass")
    channels_last: bool = False
    compile: bool = config.helped(False, "torch.compile the model")
    max_minutes: float = config.helped(0.0, "stop cleanly (checkpoint + export) after this much training time; 0 = no limit")
    stop_at: int = config.helped(0, "stop cleanly at this step (simulates an interruption); 0 = run to ``steps``")
    resume: bool = config.helped(False, "continue from out/last.pt")
    export_only: bool = config.helped(False, "with resume: load out/last.pt, validate and export it, train nothing")
    tensorboard: bool = True
    export: str = config.helped("", 'write fp16 safetensors here at the end ("" = do not export)')
    export_name: str = config.helped("", 'register the export in the manifest under this name ("" = do not)')
    weights_dir: str = config.helped("", 'manifest folder for export_name ("" = default weights folder)')




# ----------------------------------------------------------------------------------------- data


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (anchored, case-insensitive suffix match)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def split_faces(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """``(train, validation)`` face files of a UTKFace-style folder, by the project's split."""
    files = list_images(folder)
    return [p for p in files if not is_validation(p.name)], [p for p in files if is_validation(p.name)]


def split_scenes(folder: str | os.PathLike[str], holdout_every: int = 5) -> tuple[list[Path], list[Path]]:
    """``(train, held_out)`` scene files: sorted by name, index ``% holdout_every == 0`` is held out."""
    files = list_images(folder)
    if holdout_every <= 0:
        return files, []
    return [p for i, p in enumerate(files) if i % holdout_every], [p for i, p in enumerate(files) if not i % holdout_every]


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, order="C")).permute(2, 0, 1)[None].float().div_(255.0)


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR image of an HR one: antialiased bicubic shrink by ``scale``, quantised to 8 bits.

    Shape: (B, 3, H, W) float in [0, 1] (H, W multiples of ``scale``) -> (B, 3, H/scale, W/scale).
    """
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {(h, w)} is not a multiple of {scale}")
    lr = resize(hr, (h // scale, w // scale), "bicubic")
    return torch.round(lr * 255.0) / 255.0


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale`` (the SR benchmarks' ``modcrop``)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


class PatchSampler:
    """Draws random HR patches from faces (read on demand) and scenes (kept in memory).

    All randomness comes from one ``numpy.random.Generator`` whose state is checkpointed.
    """

    def __init__(self, faces: list[Path], scenes: list[np.ndarray], patch: int, scene_fraction: float, seed: int) -> None:
        if not faces and not scenes:
            raise ValueError("no training images: give --faces and/or --scenes")
        self.faces, self.scenes, self.patch = faces, scenes, int(patch)
        self.scene_fraction = scene_fraction if faces and scenes else (1.0 if scenes else 0.0)
        self.rng = np.random.default_rng(seed)

    def _one(self) -> np.ndarray:
        rng, p = self.rng, self.patch
        if rng.random() < self.scene_fraction:
            img = self.scenes[int(rng.integers(len(self.scenes)))]
        else:
            img = read_rgb(self.faces[int(rng.integers(len(self.faces)))])
        h, w = img.shape[:2]
        if h < p or w < p:
            raise ValueError(f"image of {w}x{h} px is smaller than the {p}px patch")
        y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        out = img[y : y + p, x : x + p]
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1]
        return np.rot90(out, int(rng.integers(4)))

    def batch(self, n: int) -> torch.Tensor:
        """``(n, 3, patch, patch)`` float32 HR patches in [0, 1]."""
        arr = np.stack([np.ascontiguousarray(self._one()) for _ in range(n)])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


class GenPatchSource:
    """HR/LR patch pairs from real generator outputs (see :class:`~faceswap_pipeline.train.degrade.GeneratorLR`).

    Faces are the pack's train-split crops with little padding (``pad <= 0.02``); randomness comes
    from the caller's generator (the trainer's checkpointed sampler).
    """

    def __init__(self, pack: str, patch: int, scale: int, weights_dir: str | None = None) -> None:
        from faceswap_pipeline.train.degrade import GeneratorLR, load_generators
        from faceswap_pipeline.train.packs import FacePack

        self.pack = FacePack(pack)
        names = self.pack.labels["name"]
        keep = np.flatnonzero((self.pack.labels["pad"] <= 0.02) & np.array([not is_validation(str(n)) for n in names]))
        if not len(keep):
            raise ValueError(f"no train-split faces with pad <= 0.02 in {pack}")
        self.idx, self.patch, self.scale = keep, int(patch), int(scale)
        self.gen = GeneratorLR(load_generators(weights_dir=weights_dir))

    def pair(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hr, lr)``: ``(3, patch, patch)`` target and ``(3, patch / scale, patch / scale)`` input."""
        i = int(self.idx[int(rng.integers(len(self.idx)))])
        face = to_tensor(self.pack.images([i])[0])
        lr, hr = self.gen.pair(face, int(self.pack.labels["gender"][i]), self.scale)
        s, p = self.scale, self.patch
        n = (face.shape[-1] - p) // s + 1
        y, x = int(rng.integers(n)) * s, int(rng.integers(n)) * s
        hr, lr = hr[0, :, y : y + p, x : x + p], lr[0, :, y // s : (y + p) // s, x // s : (x + p) // s]
        if rng.random() < 0.5:
            hr, lr = hr.flip(-1), lr.flip(-1)
        k = int(rng.integers(4))
        return hr.rot90(k, (-2, -1)), lr.rot90(k, (-2, -1))


def degrade_config(cfg: SRConfig) -> DegradeConfig:
    """The degradation chain's settings for ``cfg`` (``DegradeConfig`` defaults but the clean share)."""
    return DegradeConfig(clean_prob=cfg.clean_fraction)


def make_batch(cfg: SRConfig, sampler: PatchSampler, gen: GenPatchSource | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hr, lr)`` training batch: HR patches, LR by ``cfg.degrade``, a ``gen_fraction`` share from ``gen``."""
    from faceswap_pipeline.train.degrade import degrade_batch

    hr = sampler.batch(cfg.batch_size)
    lr = degrade_batch(hr, cfg.scale, degrade_config(cfg), sampler.rng) if cfg.degrade == "mix" else degrade(hr, cfg.scale)
    if gen is not None and cfg.gen_fraction > 0:
        hr, lr = hr.clone(), lr.clone()
        for i in np.flatnonzero(sampler.rng.random(cfg.batch_size) < cfg.gen_fraction):
            hr[i], lr[i] = gen.pair(sampler.rng)
    return hr, lr


def warm_start(model: torch.nn.Module, source: str, icnr_project: bool = False, reset: str = "") -> dict[str, Any]:
    """Copy matching tensors from a manifest model or checkpoint into ``model``; optional ICNR projection.

    ``reset``: comma-separated name prefixes not copied (``"tail"`` with an image skip keeps the
    zero tail, so the warm-started net starts exactly at the interpolated input).
    """
    from faceswap_pipeline.archs.srresnet import icnr_project_, load_matching, upsample_convs

    if Path(source).is_file():
        state = torch.load(source, map_location="cpu", weights_only=False)["state_dict"]
    else:
        from faceswap_pipeline.weights import load_model

        state = load_model(source).state_dict()
    prefixes = tuple(p.strip() + "." for p in reset.split(",") if p.strip())
    if prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    loaded, kept = load_matching(model, state)
    if icnr_project:
        for conv in upsample_convs(model):
            icnr_project_(conv, 2)
    log.info("warm start from %s: %d tensors copied, %d kept as initialised (%s)%s", source, len(loaded), len(kept),
             ", ".join(kept) or "none", "; sub-pixel convs projected onto ICNR" if icnr_project else "")
    return {"from": source, "copied": len(loaded), "kept": kept, "icnr_project": icnr_project}


# ---------------------------------------------------------------------------------------- model


def build_model(cfg: SRConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network and the constructor kwargs recorded in checkpoints and the manifest."""
    from faceswap_pipeline.archs.srresnet import SRResNet

    kwargs: dict[str, Any] = {"scale": cfg.scale, "n_blocks": cfg.n_blocks, "nf": cfg.nf, "variant": cfg.variant,
                              "img_skip": cfg.img_skip}
    if cfg.res_scale:
        kwargs["res_scale"] = cfg.res_scale
    return SRResNet(**kwargs), kwargs


def lr_at(step: int, cfg: SRConfig) -> float:
    """Learning rate for 0-based ``step``: linear warm-up, then cosine to ``lr * min_lr_ratio``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _perceptual(cfg: SRConfig) -> torch.nn.Module | None:
    if cfg.perceptual_weight <= 0:
        return None
    from faceswap_pipeline.train.losses import PerceptualLoss
    from faceswap_pipeline.weights import load_model

    net = load_model(cfg.perceptual_model, weights_dir=cfg.perceptual_weights_dir or None, device=cfg.device)
    layers = [int(v) for v in cfg.perceptual_layers.split(",") if v.strip()]
    return PerceptualLoss(net, layers=layers)


@torch.no_grad()
def evaluate(model: torch.nn.Module, hr_images: list[np.ndarray], scale: int, device: str = "cpu") -> dict[str, float]:
    """Mean PSNR-Y / SSIM-Y (border = scale) of SR and of bicubic on full images.

    Each HR image is mod-cropped, degraded with :func:`degrade`, upscaled, clamped and quantised
    to 8 bits before scoring.
    """
    from faceswap_pipeline.ops.metrics import psnr_y, ssim_y

    was_training = model.training
    model.eval()
    acc = {"psnr_y": [], "ssim_y": [], "bicubic_psnr_y": [], "bicubic_ssim_y": []}
    for img in hr_images:
        hr = to_tensor(mod_crop(img, scale)).to(device)
        lr = degrade(hr, scale)
        sr = torch.round(model(lr).float().clamp(0, 1) * 255) / 255
        bic = torch.round(resize(lr, hr.shape[-2:], "bicubic") * 255) / 255
        acc["psnr_y"].append(float(psnr_y(sr, hr, scale)[0]))
        acc["ssim_y"].append(float(ssim_y(sr, hr, scale)[0]))
        acc["bicubic_psnr_y"].append(float(psnr_y(bic, hr, scale)[0]))
        acc["bicubic_ssim_y"].append(float(ssim_y(bic, hr, scale)[0]))
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in acc.items()}


# ------------------------------------------------------------------------------------- training


def train(cfg: SRConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with ``losses`` of the steps run here.

    Raises:
        ValueError: bad configuration or no data.
        FileNotFoundError: ``resume`` without a checkpoint.
    """
    if cfg.loss not in ("l1", "mse"):
        raise ValueError(f"loss must be l1 or mse, not {cfg.loss!r}")
    if cfg.patch % cfg.scale:
        raise ValueError(f"patch {cfg.patch} must be a multiple of scale {cfg.scale}")
    if cfg.degrade not in ("bicubic", "mix"):
        raise ValueError(f"degrade must be bicubic or mix, not {cfg.degrade!r}")
    if cfg.gen_fraction > 0 and not cfg.gen_pack:
        raise ValueError("gen_fraction > 0 needs gen_pack (a train-split face pack)")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")

    torch.manual_seed(cfg.seed)
    faces_train, faces_val = split_faces(cfg.faces) if cfg.faces else ([], [])
    scenes_train, scenes_held = split_scenes(cfg.scenes, cfg.scene_holdout_every) if cfg.scenes else ([], [])
    log.info("data: %d train faces (%d validation faces excluded), %d train scenes (%d held out)",
             len(faces_train), len(faces_val), len(scenes_train), len(scenes_held))
    sampler = PatchSampler(faces_train, [read_rgb(p) for p in scenes_train], cfg.patch, cfg.scene_fraction, cfg.seed)
    val_images = [read_rgb(p) for p in faces_val[: cfg.val_faces]]

    model, kwargs = build_model(cfg)
    if cfg.init_from and not cfg.resume:
        warm_start(model, cfg.init_from, cfg.icnr_project, cfg.init_reset)
    gen = GenPatchSource(cfg.gen_pack, cfg.patch, cfg.scale, cfg.gen_weights_dir or None) if cfg.gen_fraction > 0 else None
    model.to(cfg.device).train()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    step, elapsed = 0, 0.0
    ckpt_path = out / "last.pt"
    if cfg.resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume given but there is no checkpoint at {ckpt_path}")
        ck = torch.load(ckpt_path, map_location=cfg.device, weights_only=False)
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed = int(ck["step"]), float(ck["elapsed_s"])
        sampler.rng.bit_generator.state = ck["sampler_rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at step %d (%.0f s trained)", ckpt_path, step, elapsed)
    fwd = torch.compile(model) if cfg.compile else model
    perceptual = _perceptual(cfg)
    pixel_loss = F.l1_loss if cfg.loss == "l1" else F.mse_loss

    writer = RunWriter(out, enabled=cfg.tensorboard, purge_step=step if step else None)

    def checkpoint() -> None:
        atomic_save({
            "format": 1, "arch": "srresnet", "kwargs": kwargs, "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(), "step": step, "elapsed_s": elapsed,
            "sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "config": asdict(cfg),
        }, ckpt_path)

    losses: list[float] = []
    clock = RunClock(wall_s=elapsed)
    last_log, last_log_step = time.perf_counter(), step
    stop_reason = "steps"
    if cfg.export_only:
        if not cfg.resume:
            raise ValueError("export_only needs resume (it exports out/last.pt)")
        stop_reason = "export_only"
    with StopOnSignal() as stop:
        while step < cfg.steps and not cfg.export_only:
            if cfg.stop_at and step >= cfg.stop_at:
                stop_reason = "stop_at"
                break
            if cfg.max_minutes and clock.wall_s() >= cfg.max_minutes * 60:
                stop_reason = "max_minutes"
                break
            if stop:
                stop_reason = "signal"
                log.warning("signal %d: checkpoint at step %d and stop", stop.signum, step)
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            hr, lr_img = make_batch(cfg, sampler, gen)
            hr, lr_img = hr.to(cfg.device), lr_img.to(cfg.device)
            if cfg.channels_last:
                hr, lr_img = hr.contiguous(memory_format=torch.channels_last), lr_img.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.bf16):
                sr = fwd(lr_img)
            sr = sr.float()
            loss = pixel_loss(sr, hr)
            if perceptual is not None:
                loss = loss + cfg.perceptual_weight * perceptual(sr, hr)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            elapsed = clock.wall_s()
            losses.append(float(loss.detach()))
            writer.scalars({"train/loss": losses[-1], "train/lr": opt.param_groups[0]["lr"]}, step)
            if step % cfg.log_every == 0:
                now = time.perf_counter()
                ips = (step - last_log_step) * cfg.batch_size / max(1e-9, now - last_log)
                last_log, last_log_step = now, step
                log.info("step %d/%d loss %.5f lr %.2e %.1f patches/s %.0f s", step, cfg.steps, losses[-1],
                         opt.param_groups[0]["lr"], ips, elapsed)
                writer.scalar("train/patches_per_s", ips, step)
            if val_images and cfg.val_every and step % cfg.val_every == 0:
                m = evaluate(model, val_images, cfg.scale, cfg.device)
                log.info("step %d val PSNR-Y %.3f dB (bicubic %.3f) SSIM-Y %.4f (bicubic %.4f)", step, m["psnr_y"],
                         m["bicubic_psnr_y"], m["ssim_y"], m["bicubic_ssim_y"])
                writer.scalars(m, step, prefix="val/")
            if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                checkpoint()
    if not cfg.export_only:
        checkpoint()
    writer.close()

    summary: dict[str, Any] = {"step": step, "elapsed_s": round(elapsed, 1), "stop_reason": stop_reason, "losses": losses}
    finished = stop_reason in ("steps", "max_minutes", "export_only")
    if val_images and finished:
        summary["val"] = evaluate(model, val_images, cfg.scale, cfg.device)
        log.info("final val: %s", summary["val"])
    if cfg.export and finished:
        summary["export"] = export(model, kwargs, cfg, step, elapsed, summary.get("val"), n_faces=len(faces_train),
                                   n_scenes=len(scenes_train))
    return summary


def export(model: torch.nn.Module, kwargs: dict[str, Any], cfg: SRConfig, step: int, elapsed: float,
           val: dict[str, float] | None, n_faces: int, n_scenes: int) -> dict[str, Any]:
    """Save fp16 safetensors to ``cfg.export`` and (if ``cfg.export_name``) register it in the manifest."""
    from faceswap_pipeline.weights import register_weights, save_weights

    path = Path(cfg.export)
    sha = save_weights(model, path, arch="srresnet", kwargs=kwargs, storage="fp16")
    entry = {
        "file": path.name,
        "sha256": sha,
        "arch": "srresnet",
        "kwargs": kwargs,
        "storage": "fp16",
        "io": {"range": [0, 1], "scale": cfg.scale, "input": "(B, 3, h, w) RGB", "output": "(B, 3, scale*h, scale*w), clamp to [0, 1]"},
        "training": {
            "command": "faceswap-pipeline train srresnet " + " ".join(config_to_argv(dataclasses.replace(cfg, export_only=False, resume=False))),
            "data": {
                "faces": f"UTKFace train/ (project train split, {n_faces} chips; validation split excluded)",
                "scenes": f"Sun & Hays 80 scenes minus held-out (sorted index % {cfg.scene_holdout_every} == 0): {n_scenes} used",
                "patches": f"{cfg.patch}x{cfg.patch} HR, LR = " + (
                    f"antialiased bicubic /{cfg.scale}" if cfg.degrade == "bicubic" else
                    f"degradation chain /{cfg.scale} (faceswap_pipeline.train.degrade.DegradeConfig: "
                    + json.dumps(degrade_config(cfg).to_dict()) + ")"
                ) + ", 8-bit; flips + rot90",
                "generator_augmentation": (f"{cfg.gen_fraction:.0%} of patches: LR = shipped CycleGAN generator on the "
                                           f"/{cfg.scale} face of {Path(cfg.gen_pack).name} (train split), target = HR + "
                                           "the generator's low-frequency change") if cfg.gen_fraction else "none",
                "init_from": cfg.init_from or "random (ICNR sub-pixel convs)",
                "scene_fraction": cfg.scene_fraction,
            },
            "split": "faceswap_pipeline.train.splits.is_validation (sha1 of file name, 10%)",
            "loss": cfg.loss + (f" + {cfg.perceptual_weight} * perceptual({cfg.perceptual_model})" if cfg.perceptual_weight else ""),
            "steps": step,
            "batch_size": cfg.batch_size,
            "wall_time_s": round(elapsed, 1),
            "machine": describe_machine(),
            "seed": cfg.seed,
        },
        "metrics": {f"val{cfg.val_faces}_{k}": round(v, 4) for k, v in (val or {}).items()},
    }
    if cfg.export_name:
        register_weights(cfg.export_name, entry, weights_dir=cfg.weights_dir or (str(path.parent) if path.parent.name else None))
    log.info("exported %s (sha256 %s)", path, sha)
    return entry


# ------------------------------------------------------------------------------------------ CLI


SWITCHES = tuple(f.name for f in fields(SRConfig) if f.type in (bool, "bool"))
"""The config's booleans: ``--name`` / ``--no-name`` switches."""


def build_parser() -> argparse.ArgumentParser:
    """argparse parser generated from :class:`SRConfig` (``--flag-name`` per field, help from its metadata)."""
    p = argparse.ArgumentParser(prog="faceswap-pipeline train srresnet", description=__doc__.split("\n\n")[0])
    config.add_config_args(p, SRConfig, switches=SWITCHES)
    return p


def config_to_argv(cfg: SRConfig) -> list[str]:
    """The flags that differ from the defaults (to record the training command)."""
    return config.config_to_argv(cfg, switches=SWITCHES)


def parse_config(argv: list[str] | None = None) -> SRConfig:
    """Parse command-line flags into an :class:`SRConfig`."""
    return config.config_from_args(build_parser().parse_args(argv), SRConfig)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``faceswap-pipeline train srresnet ...``); prints a JSON summary."""
    cfg = parse_config(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = train(cfg)
    summary["losses"] = [round(v, 6) for v in summary["losses"][-5:]]  # keep the printout short
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CycleGAN trainer: generators between two face domains (male <-> female by default).

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

    python -m faceswap_pipeline.train.cyclegan --pack-m packs/utk_train.npz ... --run-dir runs/m2f --max-minutes 60
    python -m faceswap_pipeline.train.cyclegan --resume runs/m2f/last.pt [--n-steps N ...]
    python -m faceswap_pipeline.train.cyclegan --export runs/m2f/last.pt --out-dir weights
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.archs.cyclegan import FeatureDiscriminator, PatchDiscriminator, ResnetGenerator
from faceswap_pipeline.train import checkpoint
from faceswap_pipeline.train.checkpoint import atomic_save
from faceswap_pipeline.train.cyclegan_config import CycleGANConfig, add_config_args, config_from_args, lr_factor
from faceswap_pipeline.train.cyclegan_data import DeviceStream, ImagePool, augment, balanced_index, load_domain
from faceswap_pipeline.train.cyclegan_export import evaluate_export, export
from faceswap_pipeline.train.cyclegan_guidance import GuidanceMixin
from faceswap_pipeline.train.cyclegan_run import _parser, build_trainer, load_attribute_net, main  # noqa: F401 - _parser for tests
from faceswap_pipeline.train.ema import WeightAverage
from faceswap_pipeline.train.evaluate import contact_sheet, grid_png, pair_probs, translate_faces
from faceswap_pipeline.train.evaluate import generator_target_rate as target_rate
from faceswap_pipeline.train.generator_init import (
    bilinear_init_transposed,
    equalize_transposed_phases,
    init_weights,
    transposed_phase_gains,
)
from faceswap_pipeline.train.loop import RunClock, StopOnSignal, training_device
from faceswap_pipeline.train.losses import PopulationGridHinge, grid_excess, texture_excess
from faceswap_pipeline.train.packs import read_pack, selection_mask
from faceswap_pipeline.train.runlog import RunWriter

translate = translate_faces  # the names the ablation harness and older scripts use
resolve_device = training_device
_init_weights = init_weights

log = logging.getLogger(__name__)

CKPT_FORMAT = "faceswap_pipeline/cyclegan-ckpt/1"
LOSS_NAMES = ("G_gan", "G_cycle", "G_idt", "G_attr", "G_tex", "G_grid", "G_featd", "D_m", "D_f", "D_feat")


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


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a trainer checkpoint with ``weights_only=True`` (plain tensors/dicts only)."""
    return checkpoint.load_checkpoint(path, CKPT_FORMAT, "CycleGAN trainer")


# -------------------------------------------------------------------------------------- trainer
class CycleGANTrainer(GuidanceMixin):
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
        self.device = training_device(cfg.device)
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
        if cfg.lambda_featd > 0:  # heads on the frozen attribute net's feature maps, one per domain
            if feat_net is None:
                raise ValueError("the feature discriminator needs the attribute network (lambda_featd > 0)")
            chans = self._featd_channels(feat_net)
            self.nets["F_m"] = FeatureDiscriminator(chans)
            self.nets["F_f"] = FeatureDiscriminator(chans)
        for name, net in self.nets.items():
            init_weights(net)
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
        dp = [p for n in ("D_m", "D_f", "F_m", "F_f") if n in self.nets for p in self.nets[n].parameters()]
        self.opt_G = torch.optim.Adam(gp, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
        self.opt_D = torch.optim.Adam(dp, lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused or None)
        self.pool_m, self.pool_f = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
        # generator weight averages (train/ema.py): smooth the GAN's step-to-step oscillation
        self.ema = WeightAverage({n: self.nets[n] for n in ("G_m2f", "G_f2m")}, cfg.g_ema) if cfg.g_ema > 0 else None
        # running 2-px energy means per direction for the population grid hinge (None: per-face hinge or off)
        self.grid_hinges = ({d: PopulationGridHinge(cfg.grid_slack) for d in ("m2f", "f2m")}
                            if cfg.lambda_grid > 0 and cfg.grid_hinge == "population" else None)

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
        self._writer: RunWriter | None = None
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

    def _project_generators(self) -> None:
        if self.cfg.uk_phase_equal:
            for n in ("G_m2f", "G_f2m"):
                equalize_transposed_phases(self.nets[n])

    def generator(self, name: str) -> nn.Module:
        """The generator to evaluate or export: ``G_m2f`` / ``G_f2m``, its average when the run keeps one."""
        return self.nets[name] if self.ema is None else self.ema.get(name, self.nets[name])

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
        for n in ("D_m", "D_f", "F_m", "F_f"):
            if n in self.nets:
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
            if cfg.lambda_texture > 0:  # fine texture the input never had (fooling patterns, grid)
                loss_tex = cfg.lambda_texture * (texture_excess(fake_f, real_m) + texture_excess(fake_m, real_f))
            else:
                loss_tex = torch.zeros((), device=self.device)
            loss_grid = torch.zeros((), device=self.device)
            if cfg.lambda_grid > 0:  # 2-px-period energy beyond the input's (the judge's grid figure)
                if self.grid_hinges is not None:
                    h = self.grid_hinges
                    loss_grid = cfg.lambda_grid * (h["m2f"](fake_f, real_m) + h["f2m"](fake_m, real_f))
                else:
                    loss_grid = cfg.lambda_grid * (grid_excess(fake_f, real_m, cfg.grid_slack) + grid_excess(fake_m, real_f, cfg.grid_slack))
            if cfg.lambda_featd > 0:  # the feature discriminators, frozen for this step like D
                loss_featd = cfg.lambda_featd * (self._featd_scores("F_f", self._backbone(fake_f), 1.0)
                                                 + self._featd_scores("F_m", self._backbone(fake_m), 1.0))
            else:
                loss_featd = torch.zeros((), device=self.device)
            loss_G = loss_gan + loss_cyc + loss_idt + loss_attr + loss_tex + loss_grid + loss_featd
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        self._project_generators()

        loss_D_m, loss_D_f, loss_D_feat = self._d_step(real_m, real_f, fake_m, fake_f)

        self._acc += torch.stack([loss_gan, loss_cyc, loss_idt, loss_attr, loss_tex, loss_grid, loss_featd, loss_D_m, loss_D_f, loss_D_feat]).detach().float()
        self._acc_n += 1
        if self.ema is not None:  # averaged over the final-resolution phase only
            if real_m.shape[-1] == cfg.image_size:
                self.ema.update(self.nets)
            else:
                self.ema.restart()
        self.step += 1
        self.pairs_seen += b * self.world

    def _d_step(self, real_m: torch.Tensor, real_f: torch.Tensor, fake_m: torch.Tensor, fake_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Discriminator update: real and pooled fake in one call (InstanceNorm is per sample).

        Returns the PatchGAN losses of both domains and the feature discriminators' (0 without them).
        """
        r, b = self.run, real_m.shape[0]
        ac = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        for n in ("D_m", "D_f", "F_m", "F_f"):
            if n in self.nets:
                self.nets[n].requires_grad_(True)
        pf = self.pool_f.query(fake_f)
        pm = self.pool_m.query(fake_m)
        with ac:
            sf_real, sf_fake = r["D_f"](torch.cat([real_f, pf.to(real_f.dtype)])).split(b)
            sm_real, sm_fake = r["D_m"](torch.cat([real_m, pm.to(real_m.dtype)])).split(b)
            loss_D_f = 0.5 * (_lsgan(sf_real, 1.0) + _lsgan(sf_fake, 0.0))
            loss_D_m = 0.5 * (_lsgan(sm_real, 1.0) + _lsgan(sm_fake, 0.0))
            loss_D_feat = torch.zeros((), device=self.device)
            if "F_m" in self.nets:  # the same real and pooled fake faces through the frozen backbone
                with torch.no_grad():
                    ff = self._backbone(torch.cat([real_f, pf.to(real_f.dtype)]))
                    fm = self._backbone(torch.cat([real_m, pm.to(real_m.dtype)]))
                for net, feats in (("F_f", ff), ("F_m", fm)):
                    real_s = self._featd_scores(net, [t[:b] for t in feats], 1.0)
                    fake_s = self._featd_scores(net, [t[b:] for t in feats], 0.0)
                    loss_D_feat = loss_D_feat + 0.5 * (real_s + fake_s)
        self.opt_D.zero_grad(set_to_none=True)
        (loss_D_f + loss_D_m + loss_D_feat).backward()
        self.opt_D.step()
        return loss_D_m, loss_D_f, loss_D_feat

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
            acc += torch.stack(self._d_step(real_m, real_f, fake_m, fake_f)[:2]).detach().float()
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

    def scalar(self, tag: str, value: float) -> None:
        """Record a TensorBoard scalar at the current step (main rank, ``tensorboard`` on)."""
        if self._writer is None:  # created on first use: a resume may have changed run_dir / tensorboard
            self._writer = RunWriter(self.cfg.run_dir, self.cfg.tensorboard and self.is_main)
        self._writer.scalar(tag, value, self.step)

    @torch.no_grad()
    def save_grid(self, n: int = 6) -> Path:
        """PNG rows real_m | fake_f | rec_m | idt_m and real_f | fake_m | rec_f | idt_f on fixed faces."""
        if self._grid_m is None:
            src_m = self.val_m if self.val_m is not None else self.stream_m.data
            src_f = self.val_f if self.val_f is not None else self.stream_f.data
            self._grid_m = src_m[:n].to(self.device).float().div(127.5).sub(1)
            self._grid_f = src_f[:n].to(self.device).float().div(127.5).sub(1)
        g1, g2 = self.generator("G_m2f"), self.generator("G_f2m")
        rm, rf = self._grid_m, self._grid_f
        ff, fm = g1(rm), g2(rf)
        rows = [[rm, ff, g2(ff), g2(rm)], [rf, fm, g1(fm), g1(rf)]]
        path = Path(self.cfg.run_dir) / "grids" / f"step{self.step:07d}.png"
        grid_png(rows, path)
        return path

    def validate(self) -> dict[str, float]:
        """Target rates of both generators on the validation faces, judged by the attribute net."""
        if self.val_m is None or self.val_f is None or self.feat_net is None or not hasattr(self.feat_net, "gender"):
            return {}
        pair = (self.cfg.attr_class_m, self.cfg.attr_class_f)
        out = {
            "val/target_rate_m2f": target_rate(self.generator("G_m2f"), self.feat_net, self.val_m, True, self.amp, self.cfg.attr_head, pair),
            "val/target_rate_f2m": target_rate(self.generator("G_f2m"), self.feat_net, self.val_f, False, self.amp, self.cfg.attr_head, pair),
        }
        return out

    def warm_start(self, folder: str | os.PathLike[str]) -> None:
        """Initialise both generators from shipped weights (``cyclegan.<direction>``, sha256-verified,
        dequantised) and continue their bookkeeping from the manifest (steps, pairs seen, wall and CPU
        time, history, command); the identity pre-training is skipped and a generator average restarts
        from the loaded weights. D, Adam moments and pools start fresh: follow with
        :meth:`warmup_discriminators` (``d_warmup_steps``).
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
        self.cpu_time_s = 60.0 * float(entries["G_m2f"].get("metrics", {}).get("training_cpu_minutes", 0.0))
        self.pretrain_step = self.cfg.g_pretrain_steps  # trained generators: no identity pre-training
        if self.ema is not None:
            self.ema.restart()  # the average starts from the loaded generators
        log.info("warm start from %s: step %d, %.1f CPU-min; fresh D/optimisers", folder, self.step, self.cpu_time_s / 60)

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
        if self.ema is not None:
            avg = self.ema.state_dict()
            st["ema"], st["ema_steps"] = avg["nets"], avg["steps"]
        if self.grid_hinges is not None:
            st["grid_hinges"] = {d: h.state_dict() for d, h in self.grid_hinges.items()}
        return st

    def load_state_dict(self, st: dict[str, Any]) -> None:
        for n, net in self.nets.items():
            net.load_state_dict(st[n])
        if self.ema is not None:  # a run resumed with g_ema newly on starts its averages now
            self.ema.load_state_dict({"nets": st["ema"], "steps": st["ema_steps"]} if "ema" in st
                                     else {"nets": {n: st[n] for n in self.ema.nets}, "steps": 0})
        self.opt_G.load_state_dict(st["opts"]["G"])
        self.opt_D.load_state_dict(st["opts"]["D"])
        self.pool_m.load_state_dict(st["pool"]["m"], self.device)
        self.pool_f.load_state_dict(st["pool"]["f"], self.device)
        if self.grid_hinges is not None and "grid_hinges" in st:  # a hinge newly on (a branch) starts its means now
            for d, h in self.grid_hinges.items():
                h.load_state_dict(st["grid_hinges"][d])
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
            checkpoint.atomic_save(self.state_dict(), path)
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
        clock = RunClock(self.wall_time_s, self.cpu_time_s)
        with StopOnSignal() as stop:
            self._train_until(end, clock, stop, on_log)
            stop_reason = self._stop_reason
        path = self.save()
        if self.is_main:
            if self.history and self.history[-1]["step"] != self.step:
                v = self.validate()
                if v:
                    self.history.append({"step": self.step, "pairs_seen": self.pairs_seen, "wall_time_s": self.wall_time_s, **v})
                    self.save()
            if cfg.grid_every:
                self.save_grid()
            if self._writer is not None:
                self._writer.flush()
        if stop.signum:
            stop_reason = f"signal {stop.signum}"
        return {"step": self.step, "pairs_seen": self.pairs_seen, "wall_time_s": self.wall_time_s, "cpu_time_s": self.cpu_time_s,
                "stop": stop_reason, "checkpoint": str(path)}

    def _train_until(self, end: int, clock: RunClock, stop: StopOnSignal, on_log: Callable[[dict[str, float]], None] | None) -> None:
        """The generator warm start, then training steps to ``end``, logging, validating and saving on the way.

        Sets ``self._stop_reason`` (``n_steps``, ``max_minutes``, ``max_cpu_minutes`` or ``signal N``).
        """
        cfg = self.cfg
        self._stop_reason = "n_steps"
        t_log, steps_log = clock.t0, self.step
        while self.pretrain_step < cfg.g_pretrain_steps and not stop:
            loss = self.pretrain_step_()
            self.wall_time_s = clock.wall_s()
            self.cpu_time_s = clock.cpu_s()
            if self.pretrain_step % cfg.log_every == 0 or self.pretrain_step == cfg.g_pretrain_steps:
                log.info("generator warm start %d/%d: L1 %.4g", self.pretrain_step, cfg.g_pretrain_steps, float(loss))
            if cfg.ckpt_every and self.pretrain_step % cfg.ckpt_every == 0:
                self.save()
        while self.step < end and not stop:
            self.train_step()
            self.wall_time_s = clock.wall_s()
            self.cpu_time_s = clock.cpu_s()
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
            over = clock.over(cfg.max_minutes, cfg.max_cpu_minutes, self.cpu_time_s)
            if over:
                self._stop_reason = over
                break
            if stop:
                self._stop_reason = f"signal {stop.signum}"
                log.info("stopping on signal %d at step %d", stop.signum, self.step)
                break

__all__ = [
    "CKPT_FORMAT", "LOSS_NAMES", "CycleGANConfig", "CycleGANTrainer", "DeviceStream", "ImagePool", "add_config_args", "atomic_save",
    "augment", "balanced_index", "bilinear_init_transposed", "build_trainer", "config_from_args", "contact_sheet",
    "equalize_transposed_phases", "evaluate_export", "export", "init_weights", "load_attribute_net", "load_checkpoint",
    "load_domain", "lr_factor", "main", "pair_probs", "read_pack", "resolve_device", "selection_mask", "target_rate", "translate",
    "transposed_phase_gains",
]

if __name__ == "__main__":
    sys.exit(main())

"""Set up and launch a CycleGAN run: data of this rank, the attribute network, DDP, the command line.

``python -m faceswap_pipeline.train.cyclegan ...`` (and ``faceswap-pipeline train cyclegan ...``)
call :func:`main` here; :func:`build_trainer` is what scripts (the ablation harness) use.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from faceswap_pipeline.train.cyclegan_config import CycleGANConfig, add_config_args, config_from_args
from faceswap_pipeline.train.cyclegan_data import balanced_index, load_domain
from faceswap_pipeline.train.evaluate import pair_probs
from faceswap_pipeline.train.loop import training_device
from faceswap_pipeline.train.packs import read_pack

if TYPE_CHECKING:
    from faceswap_pipeline.train.cyclegan import CycleGANTrainer

log = logging.getLogger("faceswap_pipeline.train.cyclegan")


def _init_distributed(device_pref: str) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = training_device(device_pref).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def load_attribute_net(cfg: CycleGANConfig) -> nn.Module:
    """The trained attribute network named by the config (sha256-verified)."""
    from faceswap_pipeline.weights import load_model

    return load_model(cfg.attr_name, cfg.attr_weights or None)


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
    from faceswap_pipeline.train.cyclegan import CycleGANTrainer

    return CycleGANTrainer(cfg, data["m"], data["f"], feat, val_m, val_f, rank, world)


# ----------------------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    from faceswap_pipeline.train import cyclegan

    p = argparse.ArgumentParser(prog="faceswap-pipeline train cyclegan", description=(cyclegan.__doc__ or "").split("\n")[0])
    p.add_argument("--config", help="JSON config file (flags override it)")
    p.add_argument("--resume", help="checkpoint to continue from (its config; flags override, e.g. --n-steps)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    p.add_argument("--export", metavar="CKPT", help="export a checkpoint's generators instead of training")
    p.add_argument("--out-dir", default="weights", help="weights folder for --export")
    p.add_argument("--storage", default="int8", choices=["int4", "int8", "fp16", "fp32"])
    p.add_argument("--eval-n", type=int, default=0, help="--export: validation faces per direction (0 = all)")
    p.add_argument("--identity-n", type=int, default=200, help="--export: faces for the dlib identity distance")
    p.add_argument("--sheet", default="", help="--export: write a before/after contact sheet PNG of male val faces here")
    add_config_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (``faceswap-pipeline train cyclegan ...``). Returns the exit code."""
    from faceswap_pipeline.train.cyclegan import load_checkpoint

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    base = None
    if args.export:
        from faceswap_pipeline.train.cyclegan_export import main_export

        return main_export(args)
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


__all__ = ["build_trainer", "load_attribute_net", "main"]

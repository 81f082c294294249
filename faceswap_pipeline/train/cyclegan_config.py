"""The CycleGAN trainer's typed config (every field is a ``--dashed`` flag) and its learning-rate schedule."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from faceswap_pipeline.train import config


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
    lambda_featd: float = 0.0  # feature discriminator: LSGAN heads on the frozen attribute net's features, trained with D
    featd_layers: str = "2,3"  # which attribute-net feature maps its heads read (0-3; 2,3 = 12x12x128 and 6x6x256 at 48 px)
    lambda_texture: float = 0.0  # texture hinge: local Laplacian energy of G(x) beyond its input's (losses.texture_excess)
    lambda_grid: float = 0.0  # grid hinge: 2-px-period energy share of G(x) beyond its input's (losses.grid_excess)
    grid_hinge: str = "image"  # image: per-face ratio (losses.grid_excess); population: running means (losses.PopulationGridHinge)
    grid_slack: float = 1.0  # the grid hinge acts above this ratio of output to input 2-px energy
    uk_phase_equal: bool = False  # keep every uk layer's four output phases at equal DC gain (no 2-px grid)
    lr_d: float = 0.0  # discriminator learning rate (0 = lr; TTUR when larger)
    g_ema: float = 0.0  # generator weight average (EMA decay, e.g. 0.999; 0 = off): averaged over the final-resolution
    # phase only (restarted at the curriculum switch); evaluation, snapshots and export use the averages
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
        if self.grid_hinge not in ("image", "population") or self.grid_slack <= 0:
            raise ValueError(f"grid_hinge must be image or population (not {self.grid_hinge!r}) and grid_slack > 0")
        if not 0.0 <= self.g_ema < 1.0:
            raise ValueError(f"g_ema is an EMA decay in [0, 1), not {self.g_ema}")
        if self.attr_head not in ("gender", "race"):
            raise ValueError(f"attr_head must be gender or race, not {self.attr_head!r}")
        if not self.domain_m or not self.domain_f or "2" in self.domain_m + self.domain_f or self.domain_m == self.domain_f:
            raise ValueError("domain_m and domain_f must be two different names without a '2'")

    def directions(self) -> tuple[str, str]:
        """``("<m>2<f>", "<f>2<m>")``: the directions of ``G_m2f`` and ``G_f2m`` (e.g. male2female)."""
        return f"{self.domain_m}2{self.domain_f}", f"{self.domain_f}2{self.domain_m}"
        if self.batch_size < 1 or self.n_steps < 1 or not 0 <= self.n_steps_decay <= self.n_steps:
            raise ValueError("need batch_size >= 1, n_steps >= 1, 0 <= n_steps_decay <= n_steps")


def add_config_args(parser: argparse.ArgumentParser, cls: type = CycleGANConfig) -> None:
    """Add one ``--dashed-name`` flag per config field (default None = keep the config's); see :mod:`.config`."""
    config.add_config_args(parser, cls)


def config_from_args(args: argparse.Namespace, base: CycleGANConfig | None = None) -> CycleGANConfig:
    """A config from parsed flags; unset flags keep ``base``'s (or the dataclass') values."""
    return config.config_from_args(args, CycleGANConfig, base)


def lr_factor(step: int, n_steps: int, n_steps_decay: int) -> float:
    """Constant for ``n_steps - n_steps_decay`` steps, then linear to 0 at ``n_steps`` (reference "linear" policy)."""
    start = n_steps - n_steps_decay
    if step < start or n_steps_decay == 0:
        return 1.0
    return max(0.0, 1.0 - (step - start) / float(n_steps_decay + 1))


__all__ = ["CycleGANConfig", "add_config_args", "config_from_args", "lr_factor"]

"""The CycleGAN trainer's guidance terms: attribute guidance and the feature discriminators' inputs.

A mixin of :class:`~faceswap_pipeline.train.cyclegan.CycleGANTrainer` (it uses the trainer's
``cfg``, ``feat_net`` and ``run``); kept apart so the trainer module holds the seed's maths and the
loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GuidanceMixin:
    """Attribute guidance (:meth:`_guidance`) and feature-discriminator helpers for the trainer."""

    def _featd_layers(self) -> list[int]:
        return [int(t) for t in self.cfg.featd_layers.split(",") if t.strip()]

    def _featd_channels(self, feat_net: nn.Module) -> tuple[int, ...]:
        with torch.no_grad():
            feats = feat_net.features(torch.zeros(1, 3, 32, 32))
        return tuple(int(feats[i].shape[1]) for i in self._featd_layers())

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Random flip, shift and scale (``attr_jitter``), differentiable: ``(B, C, s, s)`` -> same."""
        j, b = self.cfg.attr_jitter, x.shape[0]
        scale = 1.0 + (torch.rand(b, device=x.device) * 2 - 1) * j
        flip = torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=x.device)
        theta[:, 0, 0] = scale * flip
        theta[:, 1, 1] = scale
        theta[:, :, 2] = (torch.rand(b, 2, device=x.device) * 2 - 1) * 2 * j
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _backbone(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen attribute net's chosen feature maps of jittered faces ``(B, 3, s, s)`` in [-1, 1]."""
        feats = self.feat_net.features(self._jitter(x.float().add(1).mul(0.5)))
        return [feats[i].float() for i in self._featd_layers()]

    def _featd_scores(self, net: str, feats: list[torch.Tensor], target: float) -> torch.Tensor:
        from faceswap_pipeline.train.cyclegan import _lsgan  # the trainer's LSGAN loss (imported late: no cycle)

        return sum(_lsgan(s, target) for s in self.run[net](feats)) / len(feats)

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
        x = self._jitter(x)
        logits = self.feat_net(x)[cfg.attr_head].float()[:, [cfg.attr_class_m, cfg.attr_class_f]]
        ce = F.cross_entropy(logits, torch.full((b,), target, device=x.device, dtype=torch.long), reduction="none")
        if cfg.attr_margin > 0:  # hinge: no gradient once p(target) >= margin (CE <= -log margin)
            ce = (ce + math.log(cfg.attr_margin)).clamp_min(0.0)
        return ce.mean()


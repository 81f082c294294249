"""Exponential moving averages of network weights (Polyak averaging), as GAN trainers evaluate them.

A GAN's generator oscillates from step to step; the average of its recent weights is smoother and
usually better (StyleGAN, BigGAN and most GAN papers report their averaged generator). Any trainer
keeps one :class:`WeightAverage` per set of nets and calls :meth:`WeightAverage.update` after each
optimiser step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """EMA copies of some nets, updated from the live ones; restartable, checkpointable.

    Args:
        nets: name -> live module; each gets a frozen deep copy (eval mode, no grads).
        decay: the EMA decay (e.g. 0.999). The effective decay ramps up as
            ``min(decay, (1 + n) / (10 + n))`` over the first updates after a (re)start, so the
            average follows the early, fast-moving weights.

    ``steps`` counts the updates since the last restart; 0 means "no average yet" (the first
    update copies the live weights). Only parameters are averaged; buffers are copied.
    """

    def __init__(self, nets: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.nets = {n: copy.deepcopy(m).eval().requires_grad_(False) for n, m in nets.items()}
        self.steps = 0

    def restart(self) -> None:
        """Forget the average: the next :meth:`update` starts it from the live weights."""
        self.steps = 0

    @torch.no_grad()
    def update(self, live: dict[str, nn.Module]) -> None:
        """Fold the live nets (same names and architectures) into the averages."""
        w = 1.0 - min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        for n, avg in self.nets.items():
            src, dst = list(live[n].parameters()), list(avg.parameters())
            if self.steps == 0:
                torch._foreach_copy_(dst, src)
            else:
                torch._foreach_lerp_(dst, src, w)
            for b_dst, b_src in zip(avg.buffers(), live[n].buffers()):
                b_dst.copy_(b_src)
        self.steps += 1

    def get(self, name: str, live: nn.Module) -> nn.Module:
        """The average of ``name`` once there is one, else ``live``."""
        return self.nets[name] if self.steps > 0 else live

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "steps": self.steps,
                "nets": {n: {k: v.detach().cpu() for k, v in m.state_dict().items()} for n, m in self.nets.items()}}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        for n, m in self.nets.items():
            m.load_state_dict(st["nets"][n])
        self.steps = int(st["steps"])


__all__ = ["WeightAverage"]

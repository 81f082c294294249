"""Initialisation and projection of the CycleGAN generator's weights (the trainer's ``upsample_init``, ``uk_phase_equal``).

* :func:`init_weights`: the reference CycleGAN init (conv weights N(0, 0.02), biases 0).
* :func:`bilinear_init_transposed`: the ``uk`` (stride-2 transposed conv) layers start as a 1x1
  conv followed by bilinear x2 upsampling, so no 2-px checkerboard at init.
* :func:`equalize_transposed_phases`: the projection that keeps the four output phases of every
  ``uk`` layer at equal DC gain after each optimiser step.
"""

from __future__ import annotations

import torch
from torch import nn


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """Reference CycleGAN init: conv weights N(0, 0.02), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def bilinear_init_transposed(net: nn.Module) -> None:
    """Make every stride-2, 3x3 transposed conv of ``net`` start as bilinear upsampling of a 1x1 conv.

    A ``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` computes each of its four output phases
    from different kernel taps (1, 2, 2 and 4 of them), so a random kernel gives the phases
    different gains: the 2-px checkerboard. Here each kernel is ``W[cin, cout] * outer(t, t)`` with
    ``t = (0.5, 1, 0.5)`` and ``W`` the layer's current (random) weights' centre tap, which is exactly
    a 1x1 conv followed by bilinear x2 upsampling: every phase has gain 1 at init (ICNR's idea for
    sub-pixel convs, Aitken et al. 2017, applied to the generator's ``uk`` layers, its 3x3 transposed convolutions).
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
    checkerboard cannot appear, while every tap stays trainable (the original design's ``uk`` layers are kept;
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


__all__ = ["bilinear_init_transposed", "equalize_transposed_phases", "init_weights", "transposed_phase_gains"]

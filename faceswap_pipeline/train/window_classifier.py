"""Training of the small face / non-face window classifiers (the cascade's six nets, the face check).

* :func:`augment`: the windows' augmentation (uint8 in, float [0, 1] out).
* :func:`train_classifier`: AdamW + cross entropy, a cosine learning rate over the run's progress
  (steps done or time budget used, whichever is further, so a run its budget cuts short still ends
  annealed), exponential moving averages of loss and accuracy, TensorBoard scalars through
  :class:`~faceswap_pipeline.train.runlog.RunWriter` and the budget kept by
  :class:`~faceswap_pipeline.train.loop.RunClock`. The trainer gives the batches.
* :func:`face_prob`: a detection net's face probabilities of uint8 windows, in chunks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from faceswap_pipeline.train.loop import RunClock
from faceswap_pipeline.train.runlog import RunWriter

log = logging.getLogger(__name__)

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def augment(
    x: torch.Tensor, g: torch.Generator, grey_prob: float, flip: bool, lowres_prob: float = 0.3,
    occlude_prob: float = 0.0, light_prob: float = 0.0, blur_prob: float = 0.0,
) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float [0, 1] with random flip, greyscale, low resolution (small faces
    seen through a larger window: down- then up-sampled), contrast, brightness and noise; optionally
    (colour recipe) Gaussian blur, a side-lit brightness ramp with a gamma change, and an occluding
    rectangle (flat colour or another sample of the batch) over up to a third of the window."""
    x = x.float() / 255.0
    b, _, size, _ = x.shape
    if blur_prob > 0:
        m = torch.rand(b, generator=g) < blur_prob
        if m.any():
            sigma = size / 48 * (0.5 + 1.5 * float(torch.rand(1, generator=g)))
            r = max(1, int(math.ceil(2.5 * sigma)))
            t = torch.arange(-r, r + 1, dtype=torch.float32)
            k = torch.exp(-0.5 * (t / sigma) ** 2)
            k = k / k.sum()
            xm = F.pad(x[m], (r, r, r, r), mode="replicate")
            xm = F.conv2d(xm, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
            x[m] = F.conv2d(xm, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    if light_prob > 0:
        m = (torch.rand(b, generator=g) < light_prob).float().view(b, 1, 1, 1)
        ang = torch.rand(b, generator=g) * 2 * math.pi
        lin = torch.linspace(-1, 1, size)
        ramp = torch.cos(ang).view(b, 1, 1, 1) * lin.view(1, 1, 1, -1) + torch.sin(ang).view(b, 1, 1, 1) * lin.view(1, 1, -1, 1)
        strength = 0.5 * torch.rand(b, 1, 1, 1, generator=g)
        gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.8)
        lit = (x.clamp_min(1e-4) ** gamma) * (1 + strength * ramp)
        x = m * lit + (1 - m) * x
    if occlude_prob > 0:
        m = torch.nonzero(torch.rand(b, generator=g) < occlude_prob).squeeze(1).tolist()
        for i in m:
            ow = int(size * (0.2 + 0.35 * float(torch.rand(1, generator=g))))
            oh = int(size * (0.2 + 0.35 * float(torch.rand(1, generator=g))))
            side = int(torch.randint(0, 4, (1,), generator=g))  # occluder enters from one side
            y0 = int(torch.randint(0, size - oh + 1, (1,), generator=g)) if side < 2 else (0 if side == 2 else size - oh)
            x0 = (0 if side == 0 else size - ow) if side < 2 else int(torch.randint(0, size - ow + 1, (1,), generator=g))
            j = int(torch.randint(0, b, (1,), generator=g))
            if float(torch.rand(1, generator=g)) < 0.5:
                x[i, :, y0 : y0 + oh, x0 : x0 + ow] = torch.rand(3, 1, 1, generator=g)
            else:
                x[i, :, y0 : y0 + oh, x0 : x0 + ow] = x[j, :, y0 : y0 + oh, x0 : x0 + ow].clone()
    if size > 12 and lowres_prob > 0:
        m = torch.rand(b, generator=g) < lowres_prob
        if m.any():
            r = max(8, int(round(size * (0.3 + 0.6 * float(torch.rand(1, generator=g))))))
            small = F.interpolate(x[m], size=(r, r), mode="bilinear", antialias=True, align_corners=False)
            x[m] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    if flip:
        m = torch.rand(b, generator=g) < 0.5
        x[m] = x[m].flip(-1)
    m = torch.rand(b, generator=g) < grey_prob
    if m.any():
        x[m] = (x[m] * _LUMA).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    # mild random colour cast on everything, so colour (the non-face photos are grey) is no cue
    x = x * (0.9 + 0.2 * torch.rand(b, 3, 1, 1, generator=g))
    mean = x.mean((1, 2, 3), keepdim=True)
    c = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=g)
    br = (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.3
    noise = torch.randn(x.shape, generator=g) * (0.03 * torch.rand(b, 1, 1, 1, generator=g))
    return ((x - mean) * c + mean + br + noise).clamp(0, 1)



def train_classifier(
    net: nn.Module,
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    *,
    name: str,
    steps: int,
    lr: float,
    weight_decay: float,
    budget_s: float,
    seed: int,
    channels_last: bool = True,
    bf16: bool = False,
    writer: RunWriter | None = None,
) -> dict[str, float | int]:
    """Train ``net`` for ``steps`` steps or until ``budget_s`` wall seconds are spent.

    Args:
        net: a classifier returning ``(B, C)`` logits; trained in place, returned in eval mode and
            contiguous (NCHW) layout (safetensors stores contiguous tensors).
        batch: ``batch(g)`` -> ``(x (B, 3, S, S) float in [0, 1], y (B,) int64 class)``, drawing
            its randomness from the generator ``g`` (seeded with ``seed``).
        name: tag of the log lines and TensorBoard scalars (``<name>/loss``, ``<name>/acc``).
        steps, lr, weight_decay: AdamW steps, peak learning rate, weight decay.
        budget_s: wall-time budget in seconds (0: the run stops after its first step).
        seed: seeds ``g`` and torch's global generator (weight-independent randomness: dropout).
        channels_last: train in NHWC (a pure layout change, same maths); oneDNN's CPU convolutions
            on these 3-channel windows run ~2x faster that way (24-net forward+backward, batch 192:
            42 -> 23 ms, one thread).
        bf16: bfloat16 autocast for the forward/backward (weights and the optimiser stay float32).
        writer: TensorBoard scalars every 50 steps (None: none).

    Returns:
        ``{"steps", "wall_time_s", "train_loss_ema", "train_acc_ema"}`` (EMA decay 0.98).
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    net.train()
    clock = RunClock()
    loss_ema: float | None = None
    acc_ema: float | None = None
    done = 0
    if channels_last:
        net.to(memory_format=torch.channels_last)
    for step in range(steps):
        progress = min(1.0, max(step / steps, clock.session_s() / budget_s if budget_s > 0 else 0.0))
        step_lr = lr * 0.5 * (1 + math.cos(math.pi * progress))
        for grp in opt.param_groups:
            grp["lr"] = step_lr
        x, y = batch(g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x).float()
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((logits.argmax(1) == y).float().mean())
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        acc_ema = acc if acc_ema is None else 0.98 * acc_ema + 0.02 * acc
        done = step + 1
        if writer is not None and step % 50 == 0:
            writer.scalars({"loss": lv, "acc": acc}, step, prefix=f"{name}/")
        if step % 200 == 0:
            log.info("%s step %d/%d loss %.4f acc %.3f lr %.2e (%.0f s)", name, step, steps, loss_ema, acc_ema, step_lr, clock.session_s())
        if clock.session_s() > budget_s:
            log.warning("%s: time budget %.1f min reached at step %d/%d", name, budget_s / 60, step + 1, steps)
            break
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    return {"steps": done, "wall_time_s": round(clock.session_s(), 1), "train_loss_ema": round(loss_ema or 0, 4), "train_acc_ema": round(acc_ema or 0, 4)}


@torch.inference_mode()
def face_prob(net: nn.Module, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Face probability ``(B,)`` float of uint8 windows ``(B, 3, S, S)``, ``chunk`` windows at a time."""
    net.eval()
    if x.shape[0] == 0:
        return torch.zeros(0)
    return torch.cat([net.face_prob(x[i : i + chunk].float() / 255.0) for i in range(0, x.shape[0], chunk)])


__all__ = ["augment", "face_prob", "train_classifier"]

"""The CycleGAN trainer's data path: domains from face packs, device-resident batches, augmentation, image pools.

Everything here works on uint8 / float tensors already on the training device, so a training
step makes no host round trip; the states of :class:`DeviceStream` and :class:`ImagePool` are
part of the trainer's checkpoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from faceswap_pipeline.train.packs import read_pack


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


__all__ = ["DeviceStream", "ImagePool", "augment", "balanced_index", "load_domain"]

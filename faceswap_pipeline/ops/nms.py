"""Box arithmetic for window detectors: IoU, greedy NMS (vectorised, torch) and calibration.

Boxes are ``(N, 4)`` float tensors ``(x0, y0, x1, y1)`` in pixels (``x1``/``y1`` exclusive, so a
box's width is ``x1 - x0``). Everything here is a pure function that runs on CPU or GPU tensors;
torchvision is not used (no CPU build of it is available to this project).

Calibration follows Li et al., "A Convolutional Neural Network Cascade for Face Detection" (CVPR
2015): a calibration net classifies a window into one of 45 patterns ``(s_n, x_n, y_n)`` (5 scales
x 3 x-shifts x 3 y-shifts). Pattern ``n`` adjusts a window ``(x, y, w, h)`` (top-left corner, size)
to ``(x - x_n w / s_n, y - y_n h / s_n, w / s_n, h / s_n)``. At test time the three parameters are
averaged over the patterns whose probability exceeds a floor, weighted by probability (not argmax).
"""

from __future__ import annotations

import itertools

import torch

CAL_SCALES = (0.83, 0.91, 1.0, 1.10, 1.21)
"""Scale factors ``s_n`` of the calibration patterns."""
CAL_SHIFTS = (-0.17, 0.0, 0.17)
"""Shifts ``x_n`` / ``y_n`` (fractions of the window side) of the calibration patterns."""


def calibration_patterns(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The 45 calibration patterns, class ``n`` -> ``(s_n, x_n, y_n)``.

    Class order: ``n = 9 * i_s + 3 * i_x + i_y`` over ``CAL_SCALES`` x ``CAL_SHIFTS`` x ``CAL_SHIFTS``
    (so class 22 is the identity ``(1.0, 0.0, 0.0)``).

    Shape: (45, 3).
    """
    rows = list(itertools.product(CAL_SCALES, CAL_SHIFTS, CAL_SHIFTS))
    return torch.tensor(rows, dtype=dtype, device=device)


N_CAL = len(CAL_SCALES) * len(CAL_SHIFTS) ** 2
IDENTITY_CLASS = 22


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(N, 4)`` xyxy boxes (0 for empty boxes). Shape: (N,)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of ``(N, 4)`` and ``(M, 4)`` xyxy boxes. Shape: (N, M)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp_min(1e-12)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: keep the highest score, drop boxes overlapping it, repeat.

    Exactly the classic greedy algorithm (a suppressed box never suppresses another), vectorised:
    up to ``_MATRIX_MAX`` boxes the IoU matrix is computed once and the greedy solution found by a
    few matrix-vector iterations; above it, one whole-vector step per *kept* box (O(N) memory).

    Args:
        boxes: ``(N, 4)`` xyxy.
        scores: ``(N,)``.
        iou_threshold: a box is suppressed when its IoU with a kept, higher-scored box is
            strictly greater than this.

    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, highest score first.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order]
    if n <= _MATRIX_MAX:
        # over[j, i]: higher-scored j would suppress i. Greedy NMS is the unique solution of
        # keep[i] = not any(keep[j] and over[j, i] for j < i); Jacobi iteration from all-True reaches
        # it in (longest suppression chain) steps, each one matrix-vector product.
        over = torch.triu(box_iou(b, b) > iou_threshold, diagonal=1).to(b.dtype)
        keep_mask = torch.ones(n, dtype=torch.bool, device=boxes.device)
        for _ in range(n + 1):
            new = (keep_mask.to(b.dtype) @ over) == 0
            if torch.equal(new, keep_mask):
                break
            keep_mask = new
        return order[torch.nonzero(keep_mask).squeeze(1)]
    # large N: one IoU row per kept box (O(N) memory)
    alive = torch.ones(n, dtype=torch.bool, device=boxes.device)
    keep = []
    while True:
        # argmax of a bool->uint8 vector is the first alive index (highest remaining score)
        i = int(torch.argmax(alive.to(torch.uint8)))
        if not bool(alive[i]):
            break
        keep.append(i)
        alive &= ~(box_iou(b[i : i + 1], b)[0] > iou_threshold)
        alive[i] = False
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


_MATRIX_MAX = 4096
_BATCH_MAX = 1 << 26  # padded (groups x M x M) entries above which batched_nms falls back


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """:func:`nms` applied independently within each group (e.g. image index), all groups at once.

    Boxes are laid out as a padded ``(G, M, 4)`` batch and the greedy solution of every group is
    found by the same batched matrix iteration as :func:`nms` (one ``bmm`` per step for all groups),
    so a batch of many images costs a handful of kernel launches. Very large groups fall back to
    :func:`nms` on boxes shifted apart per group.

    Args:
        boxes: ``(N, 4)`` xyxy. scores: ``(N,)``. groups: ``(N,)`` int64 group ids.
        iou_threshold: as in :func:`nms`.

    Returns:
        ``(K,)`` int64 indices of kept boxes, highest score first (across groups).
    """
    n = boxes.shape[0]
    dev = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=dev)
    by_score = torch.argsort(scores, descending=True, stable=True)
    idx = by_score[torch.argsort(groups[by_score], stable=True)]  # by group, then score desc
    g = groups[idx]
    _, counts = torch.unique_consecutive(g, return_counts=True)
    n_groups, m = counts.shape[0], int(counts.max())
    if m > _MATRIX_MAX or n_groups * m * m > _BATCH_MAX:
        span = (boxes.max() - boxes.min()).clamp_min(1) + 1
        shifted = boxes - boxes.min() + (groups.to(boxes.dtype) * span)[:, None]
        return nms(shifted, scores, iou_threshold)
    starts = torch.cumsum(counts, 0) - counts
    gid = torch.repeat_interleave(torch.arange(n_groups, device=dev), counts)
    pos = torch.arange(n, device=dev) - starts[gid]
    padded = boxes.new_zeros((n_groups, m, 4))
    padded[gid, pos] = boxes[idx]
    valid = torch.zeros((n_groups, m), dtype=torch.bool, device=dev)
    valid[gid, pos] = True
    lt = torch.maximum(padded[:, :, None, :2], padded[:, None, :, :2])
    rb = torch.minimum(padded[:, :, None, 2:], padded[:, None, :, 2:])
    wh = (rb - lt).clamp_min(0)
    inter = wh[..., 0] * wh[..., 1]
    area = (padded[..., 2] - padded[..., 0]).clamp_min(0) * (padded[..., 3] - padded[..., 1]).clamp_min(0)
    iou = inter / (area[:, :, None] + area[:, None, :] - inter).clamp_min(1e-12)
    over = torch.triu(iou > iou_threshold, diagonal=1) & valid[:, :, None] & valid[:, None, :]
    over_f = over.to(boxes.dtype)
    keep = valid.clone()
    for _ in range(m + 1):
        new = (torch.bmm(keep.to(boxes.dtype)[:, None, :], over_f)[:, 0] == 0) & valid
        if torch.equal(new, keep):
            break
        keep = new
    kept = idx[(starts[:, None] + torch.arange(m, device=dev)[None])[keep]]
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def calibrate(boxes: torch.Tensor, probs: torch.Tensor, floor: float = 1.0 / N_CAL) -> torch.Tensor:
    """Apply calibration-net outputs to windows (Li et al. 2015, probability-weighted mean).

    For each window the patterns with probability ``> floor`` are averaged, weighted by their
    probability: ``s = sum p_n s_n / sum p_n`` (same for ``x``, ``y``), and the window
    ``(x, y, w, h)`` becomes ``(x - x w / s, y - y h / s, w / s, h / s)`` (shift relative to the
    *original* size, as in the paper). When no class exceeds the floor, the most probable one is used.

    Args:
        boxes: ``(N, 4)`` xyxy windows.
        probs: ``(N, 45)`` class probabilities (softmax of the calibration net), class order of
            :func:`calibration_patterns`.
        floor: probability floor (1/45 in the paper).

    Returns:
        ``(N, 4)`` calibrated xyxy boxes.
    """
    if probs.shape[-1] != N_CAL:
        raise ValueError(f"expected (N, {N_CAL}) probabilities, got {tuple(probs.shape)}")
    pat = calibration_patterns(boxes.dtype, boxes.device)
    p = probs.to(boxes.dtype)
    w = torch.where(p > floor, p, torch.zeros_like(p))
    none = w.sum(1) <= 0
    if bool(none.any()):
        top = torch.nn.functional.one_hot(p.argmax(1), N_CAL).to(p.dtype)
        w = torch.where(none[:, None], top, w)
    mean = (w @ pat) / w.sum(1, keepdim=True)
    s, dx, dy = mean[:, 0], mean[:, 1], mean[:, 2]
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    x0 = boxes[:, 0] - dx * bw / s
    y0 = boxes[:, 1] - dy * bh / s
    return torch.stack([x0, y0, x0 + bw / s, y0 + bh / s], dim=1)


def perturb(boxes: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The window that calibration class ``n`` maps back onto ``boxes`` (training-sample geometry).

    Inverse of the pattern adjustment: a true box ``(x, y, w, h)`` seen through the window
    ``(x + x_n w, y + y_n h, s_n w, s_n h)`` is corrected by pattern ``n`` back to ``(x, y, w, h)``.

    Args:
        boxes: ``(N, 4)`` xyxy true boxes. classes: ``(N,)`` int64 in ``[0, 45)``.

    Returns:
        ``(N, 4)`` xyxy perturbed windows.
    """
    pat = calibration_patterns(boxes.dtype, boxes.device)[classes]
    s, dx, dy = pat[:, 0], pat[:, 1], pat[:, 2]
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    x0 = boxes[:, 0] + dx * bw
    y0 = boxes[:, 1] + dy * bh
    return torch.stack([x0, y0, x0 + s * bw, y0 + s * bh], dim=1)


__all__ = [
    "CAL_SCALES",
    "CAL_SHIFTS",
    "IDENTITY_CLASS",
    "N_CAL",
    "batched_nms",
    "box_area",
    "box_iou",
    "calibrate",
    "calibration_patterns",
    "nms",
    "perturb",
]

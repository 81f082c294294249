"""Train the face-check net (``facecheck.v1``), the verify stage's second opinion.

It must not be the detector itself, so it is a separate CNN (:class:`~faceswap_pipeline.archs.facecheck.FaceCheckNet`,
64 px window with context, :mod:`faceswap_pipeline.stages.facecheck`) trained on:

* **positives**: UTKFace *train-split* chips pasted on colour and grey backgrounds (the cascade
  trainer's :func:`~faceswap_pipeline.train.cascade_data.composite`, rotated, scaled), and the
  detections of *both* detectors (dlib HOG, the cascade) that match an annotated face on the FDDB
  **train half** (real photos: pose, blur, light, occlusion), each with jittered copies, plus the
  annotated faces both detectors miss (mapped to HOG framing);
* **negatives**: both detectors' detections (HOG down to ``hog_threshold``, the cascade down to a
  48-net score of ``cascade_t48``) on non-face photos (colour: the ``nonface_colour`` train half,
  scene photos; grey: the non-face set's train part) and the face-free detections on the FDDB
  train half, plus random windows of all of them (face-free ones on FDDB).

Every fifth FDDB train-half photo is held out (``dev``), with the UTKFace *validation* split
(HOG's top box per chip, colour and grey): the threshold is the largest keeping ``keep`` of the
faces of every dev group. The FDDB test half and the nonface_colour test half are never read.

Run: ``python -m faceswap_pipeline.train.facecheck --utk DIR --nonface DIR --nonface-colour DIR --scenes DIR --fddb DIR --threads 1 --export``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceswap_pipeline.train import config
from faceswap_pipeline.train.cascade_data import to_uint8
from faceswap_pipeline.train.checkpoint import atomic_save, load_checkpoint, save_checkpoint
from faceswap_pipeline.train.window_classifier import augment, face_prob, train_classifier

log = logging.getLogger(__name__)

CKPT_FORMAT = "faceswap_pipeline/facecheck-ckpt/1"
"""Format tag of the trained net's checkpoint (``<out>/facecheck.pt``: ``state_dict``, ``info``)."""


@dataclass
class FaceCheckConfig:
    """Everything that defines a face-check training run (saved as ``config.json`` in ``out``)."""

    utk: str = ""
    nonface: str = ""
    nonface_colour: str = ""
    scenes: str = ""
    fddb: str = ""
    out: str = "runs/facecheck"
    weights_dir: str | None = None
    export: bool = False
    seed: int = 0
    threads: int | None = None
    size: int = 64
    context: float = 1.25
    width: int = 16
    n_utk: int = 6000
    n_utk_val: int = 600
    max_grey_nonface: int = 500
    fddb_dev_every: int = 5
    fddb_iou: float = 0.4
    fddb_transform: tuple[float, float, float, float] = (0.0, 0.1, 1.0, 1.35)
    """HOG box -> FDDB box transform ``(ax, ay, sw, sh)`` used to match detections to FDDB faces"""
    hog_threshold: float = -0.5
    cascade_t48: float = 0.05
    jitter_copies: int = 3
    random_neg_per_photo: int = 30
    steps: int = 3000
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pos_fraction: float = 0.4
    grey_prob: float = 0.3
    max_minutes: float = 20.0
    keep: float = 0.997
    bf16: bool = False
    n_utk_chips: int = 0
    """UTKFace train-split chips used as photos of their own (a tight face crop, no context past the
    chip: zeros, as the window crop pads), window = the cascade's mean HOG box, jittered"""
    init: str = ""
    """a facecheck.pt checkpoint (or a weights folder with facecheck.v1) to fine-tune from"""


def _jitter(boxes: torch.Tensor, g: torch.Generator, copies: int, shift: float = 0.08, scale: tuple[float, float] = (0.88, 1.15)) -> torch.Tensor:
    """The boxes plus ``copies`` jittered copies of each (centre shift, size scale; aspect kept)."""
    if copies <= 0 or boxes.shape[0] == 0:
        return boxes
    b = boxes.repeat(copies, 1)
    wh = b[:, 2:] - b[:, :2]
    c = (b[:, :2] + b[:, 2:]) / 2 + (torch.rand(b.shape[0], 2, generator=g) * 2 - 1) * shift * wh
    s = torch.exp(math.log(scale[0]) + torch.rand(b.shape[0], 1, generator=g) * (math.log(scale[1]) - math.log(scale[0])))
    return torch.cat([boxes, torch.cat([c - wh * s / 2, c + wh * s / 2], 1)])


def _grey(im: np.ndarray) -> np.ndarray:
    g = (im[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().clip(0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _apply(boxes: np.ndarray, t: tuple[float, float, float, float], inverse: bool = False) -> np.ndarray:
    ax, ay, sw, sh = t
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    c = (b[:, :2] + b[:, 2:]) / 2
    wh = b[:, 2:] - b[:, :2]
    if not inverse:
        cx, cy, w, h = c[:, 0] + ax * wh[:, 0], c[:, 1] + ay * wh[:, 1], sw * wh[:, 0], sh * wh[:, 1]
    else:
        w, h = wh[:, 0] / sw, wh[:, 1] / sh
        cx, cy = c[:, 0] - ax * w, c[:, 1] - ay * h
    return np.c_[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    ar = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (ar(a)[:, None] + ar(b)[None, :] - inter)


class Detectors:
    """Both detectors at their mining settings: HOG down to ``hog_threshold``, the cascade down to ``cascade_t48``."""

    def __init__(self, cfg: FaceCheckConfig) -> None:
        from faceswap_pipeline.stages.detect_cascade import CascadeDetector
        from faceswap_pipeline.stages.detect_hog import HogDetector

        self.hog = HogDetector(upsample=1, threshold=cfg.hog_threshold)
        c = CascadeDetector.from_pretrained(min_face=20)
        t12, t24, _ = c.thresholds
        self.cascade = CascadeDetector.from_pretrained(min_face=20, thresholds=(t12, t24, cfg.cascade_t48))

    def __call__(self, im: np.ndarray) -> np.ndarray:
        out = [d.box for d in self.hog.detect(im)] + [d.box for d in self.cascade.detect(im)]
        return np.array(out, dtype=np.float64).reshape(-1, 4)


def build_samples(cfg: FaceCheckConfig) -> dict[str, torch.Tensor]:
    """uint8 crops: ``pos``, ``neg`` (training), ``dev_<group>`` (threshold choice)."""
    from faceswap_pipeline.stages.detect_hog import HogDetector
    from faceswap_pipeline.stages.facecheck import check_crops
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig
    from faceswap_pipeline.train.cascade_data import composite, nonface_files, to_tensor, utk_train_files
    from faceswap_pipeline.train.colour_data import face_free_windows, fddb_items, half_split, image_files, read_rgb
    from faceswap_pipeline.train.splits import is_validation

    rng = np.random.default_rng(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    S: dict[str, list[torch.Tensor]] = {"pos": [], "neg": []}
    det = Detectors(cfg)
    crop = lambda im, b: to_uint8(check_crops(im, b, cfg.size, cfg.context))  # noqa: E731
    t0 = time.time()

    # ---- non-face photos: both detectors' hits + random windows
    grey_train, _ = nonface_files(cfg.nonface) if cfg.nonface else ([], [])
    grey_train = [grey_train[i] for i in rng.permutation(len(grey_train))[: cfg.max_grey_nonface]]
    colour: list[Path] = []
    if cfg.nonface_colour:
        colour += half_split(image_files(cfg.nonface_colour))[0]
    if cfg.scenes:
        colour += image_files(cfg.scenes)
    bg_tensors = []
    n_hits = 0
    for p in colour + grey_train:
        im = read_rgb(p)
        bg_tensors.append(to_tensor(im))
        hits = det(im)
        n_hits += len(hits)
        if len(hits):
            S["neg"].append(crop(im, _jitter(torch.as_tensor(hits, dtype=torch.float32), g, 1)))
        k = cfg.random_neg_per_photo * (3 if p in colour else 1)
        rnd = face_free_windows(im.shape[:2], np.zeros((0, 4)), k, rng, min_side=20)
        if len(rnd):
            S["neg"].append(crop(im, rnd))
    log.info("non-face photos: %d colour, %d grey, %d detector hits (%.0f s)", len(colour), len(grey_train), n_hits, time.time() - t0)

    # ---- FDDB train half: matched detections (+ missed faces) as positives, face-free hits as negatives
    dev_fddb: list[torch.Tensor] = []
    if cfg.fddb:
        from faceswap_pipeline.train.cascade_data import face_free

        items = fddb_items(cfg.fddb, "train")
        for i, (p, gt) in enumerate(items):
            im = read_rgb(p)
            hits = det(im)
            mapped = _apply(hits, cfg.fddb_transform)
            iou = _iou(mapped, gt)
            tp = hits[iou.max(1) >= cfg.fddb_iou] if iou.size else hits[:0]
            ff = face_free(torch.as_tensor(hits, dtype=torch.float32), gt).numpy() if len(hits) else np.zeros(0, bool)
            if i % cfg.fddb_dev_every == 0:
                if len(tp):
                    dev_fddb.append(crop(im, tp))
                continue
            if len(tp):
                S["pos"].append(crop(im, _jitter(torch.as_tensor(tp, dtype=torch.float32), g, cfg.jitter_copies)))
            missed = gt[(iou.max(0) < cfg.fddb_iou) if iou.size else np.ones(len(gt), bool)]
            missed = missed[(missed[:, 2] - missed[:, 0]) >= 20]
            if len(missed):
                S["pos"].append(crop(im, _jitter(torch.as_tensor(_apply(missed, cfg.fddb_transform, inverse=True), dtype=torch.float32), g, cfg.jitter_copies)))
            if ff.any():
                S["neg"].append(crop(im, _jitter(torch.as_tensor(hits[ff], dtype=torch.float32), g, 1)))
            rnd = face_free_windows(im.shape[:2], gt, cfg.random_neg_per_photo, rng, min_side=20)
            if len(rnd):
                S["neg"].append(crop(im, rnd))
        log.info("FDDB train half: %d photos (%d held out as dev) (%.0f s)", len(items), len(range(0, len(items), cfg.fddb_dev_every)), time.time() - t0)

    # ---- UTKFace train split: composites on the photos above (colour + grey)
    ccfg = CascadeTrainConfig()
    files = utk_train_files(cfg.utk)
    files = [files[i] for i in rng.permutation(len(files))[: cfg.n_utk]]
    for start in range(0, len(files), 256):
        crops = []
        for p in files[start : start + 256]:
            chip = to_tensor(read_rgb(p))
            window = tuple(ccfg.window)
            if rng.random() < 0.5:
                chip = chip.flip(-1)
                window = (chip.shape[2] - window[0], window[1], window[2])
            face_px = float(np.exp(rng.uniform(np.log(40), np.log(110))))
            canvas = int(face_px * 2.2)
            ang = rng.uniform(-25, 25) if rng.random() < 0.5 else rng.uniform(-5, 5)
            off = tuple(rng.uniform(-0.1, 0.1, 2) * face_px)
            bg = bg_tensors[int(rng.integers(len(bg_tensors)))] if bg_tensors else torch.rand(3, 64, 64)
            c, fb = composite(chip, bg, window, face_px, canvas, ang, off, rng)  # type: ignore[arg-type]
            fb = _jitter(fb[None], g, 1)[1:]
            crops.append(check_crops(c[None], fb, cfg.size, cfg.context))
        S["pos"].append(to_uint8(torch.cat(crops)))
    log.info("UTK composites: %d (%.0f s)", len(files), time.time() - t0)

    out = {k: torch.cat(v) for k, v in S.items()}
    out.update(chip_samples(cfg))
    if dev_fddb:
        out["dev_fddb"] = torch.cat(dev_fddb)
    # ---- UTKFace validation split: HOG's top box per chip, colour and grey
    hog = HogDetector(upsample=1)
    val = [f for f in sorted(Path(cfg.utk).iterdir()) if is_validation(f.name)]
    val = [val[i] for i in rng.permutation(len(val))[: cfg.n_utk_val]]
    for kind in ("colour", "grey"):
        crops = []
        for f in val:
            im = read_rgb(f)
            im = _grey(im) if kind == "grey" else im
            d = hog.detect(im)
            if d:
                crops.append(crop(im, np.array([d[0].box])))
        if crops:
            out[f"dev_utk_{kind}"] = torch.cat(crops)
    log.info("samples: %s (%.0f s)", {k: tuple(v.shape) for k, v in out.items()}, time.time() - t0)
    return out


def chip_samples(cfg: FaceCheckConfig) -> dict[str, torch.Tensor]:
    """``pos_chips``: ``n_utk_chips`` train-split chips, each as its own photo (see ``n_utk_chips``)."""
    if cfg.n_utk_chips <= 0:
        return {}
    from faceswap_pipeline.stages.facecheck import check_crops
    from faceswap_pipeline.train.cascade_config import CascadeTrainConfig
    from faceswap_pipeline.train.cascade_data import utk_train_files
    from faceswap_pipeline.train.colour_data import read_rgb

    rng = np.random.default_rng(cfg.seed + 7)
    g = torch.Generator().manual_seed(cfg.seed + 7)
    cx, cy, side = CascadeTrainConfig().window
    files = utk_train_files(cfg.utk)
    files = [files[i] for i in rng.permutation(len(files))[: cfg.n_utk_chips]]
    box = torch.tensor([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]], dtype=torch.float32)
    crops = []
    for f in files:
        im = read_rgb(f)
        if rng.random() < cfg.grey_prob:
            im = _grey(im)
        crops.append(to_uint8(check_crops(im, _jitter(box, g, 1, shift=0.06, scale=(0.9, 1.1))[1:], cfg.size, cfg.context)))
    return {"pos_chips": torch.cat(crops)}


def train(net: torch.nn.Module, S: dict[str, torch.Tensor], cfg: FaceCheckConfig) -> dict[str, Any]:
    """Train ``net`` on the uint8 windows ``S["pos"]`` (+ ``S["pos_chips"]``) and ``S["neg"]``.

    A batch is ``pos_fraction`` positives (label 1), the rest negatives (label 0), augmented with
    the cascade's window augmentation plus occlusion, side light and blur.
    """
    pos = torch.cat([S["pos"], S["pos_chips"]]) if "pos_chips" in S else S["pos"]
    npos = int(cfg.batch * cfg.pos_fraction)

    def batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ip = torch.randint(0, pos.shape[0], (npos,), generator=g)
        ineg = torch.randint(0, S["neg"].shape[0], (cfg.batch - npos,), generator=g)
        x = augment(torch.cat([pos[ip], S["neg"][ineg]]), g, cfg.grey_prob, flip=True, lowres_prob=0.3, occlude_prob=0.1, light_prob=0.3, blur_prob=0.2)
        return x, torch.cat([torch.ones(npos, dtype=torch.long), torch.zeros(cfg.batch - npos, dtype=torch.long)])

    return train_classifier(net, batch, name="facecheck", steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            budget_s=cfg.max_minutes * 60, seed=cfg.seed + 1, channels_last=True, bf16=cfg.bf16)


def probs(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Face probability ``(B,)`` of uint8 check windows ``(B, 3, size, size)``."""
    return face_prob(net, x, chunk=512)


def choose_threshold(net: torch.nn.Module, S: dict[str, torch.Tensor], keep: float) -> dict[str, Any]:
    """Largest threshold keeping ``keep`` of every dev group's faces (and what each group keeps)."""
    groups = {k: probs(net, v) for k, v in S.items() if k.startswith("dev_")}
    per = {k: float(torch.quantile(p, 1 - keep)) - 1e-6 for k, p in groups.items() if len(p)}
    t = max(1e-4, min(per.values())) if per else 0.5
    kept = {k: {"faces": int(len(p)), "kept": int((p >= t).sum())} for k, p in groups.items()}
    neg = probs(net, S["neg"][: 20000])
    return {"threshold": round(t, 6), "per_group": {k: round(v, 6) for k, v in per.items()}, "kept": kept,
            "train_neg_pass_rate": round(float((neg >= t).float().mean()), 4)}


def run(cfg: FaceCheckConfig, argv: list[str] | None = None) -> dict[str, Any]:
    from faceswap_pipeline.archs.facecheck import FaceCheckNet

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    cache = out / "samples.pt"
    if cache.is_file():
        S = torch.load(cache, weights_only=True)
        if cfg.n_utk_chips > 0 and "pos_chips" not in S:  # a cache of a run without chips: add them
            S.update(chip_samples(cfg))
            atomic_save(S, cache)
    else:
        S = build_samples(cfg)
        atomic_save(S, cache)
    net = FaceCheckNet(width=cfg.width, in_size=cfg.size)
    if cfg.init:
        if Path(cfg.init).is_file():
            net.load_state_dict(load_checkpoint(cfg.init, CKPT_FORMAT, "face-check trainer")["state_dict"])
        else:
            from faceswap_pipeline.weights import load_model

            net.load_state_dict(load_model("facecheck.v1", cfg.init).float().state_dict())
        log.info("initialised from %s", cfg.init)
    ck = out / "facecheck.pt"
    if ck.is_file():
        blob = load_checkpoint(ck, CKPT_FORMAT, "face-check trainer")
        net.load_state_dict(blob["state_dict"])
        info = blob["info"]
        log.info("resumed the trained net from %s", ck)
    else:
        info = train(net, S, cfg)
        save_checkpoint({"state_dict": net.state_dict(), "info": info}, ck, CKPT_FORMAT)
    net.eval()
    thr = choose_threshold(net, S, cfg.keep)
    report = {"training": info, "threshold": thr, "samples": {k: int(v.shape[0]) for k, v in S.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("report: %s", json.dumps(report))
    if cfg.export:
        export(net, cfg, report, argv)
    return report


def export(net: torch.nn.Module, cfg: FaceCheckConfig, report: dict[str, Any], argv: list[str] | None) -> None:
    """Write ``facecheck_v1.safetensors`` (fp16) and its manifest entry ``facecheck.v1`` (with the threshold)."""
    from faceswap_pipeline.machine import describe_machine
    from faceswap_pipeline.train.export import export_model

    kw = {"width": cfg.width, "in_size": cfg.size}
    cmd = "python -m faceswap_pipeline.train.facecheck " + " ".join(argv if argv is not None else sys.argv[1:])
    path, _ = export_model(
        net, "facecheck.v1", cfg.weights_dir, file="facecheck_v1.safetensors", arch="face_check_cnn", kwargs=kw, storage="fp16",
        io={"input": [3, cfg.size, cfg.size], "range": [0, 1], "layout": "BCHW RGB", "output": "logits (2: [non-face, face])",
            "window": {"context": cfg.context, "note": "square of side context * sqrt(w h) centred on the detection box (HOG framing)"}},
        check={"threshold": report["threshold"]["threshold"], "keep_target": cfg.keep, "fit": report["threshold"]},
        training={
            "command": cmd,
            "data": "positives: UTKFace train-split composites, HOG/cascade detections matching FDDB train-half faces (+ missed faces); "
                    "negatives: HOG/cascade detections and random windows on nonface_colour train half, scene photos, grey non-face train photos, face-free FDDB train-half windows",
            "split": f"FDDB train half (every {cfg.fddb_dev_every}th photo held out for the threshold) + UTKFace validation split for the threshold; FDDB and nonface_colour test halves never read",
            "steps": report["training"]["steps"], "batch": cfg.batch, "wall_time_s": report["training"]["wall_time_s"],
            "machine": f"{describe_machine('cpu')}, torch {torch.__version__}",
            "seed": cfg.seed,
        },
        metrics={"samples": report["samples"], "train_loss_ema": report["training"]["train_loss_ema"], "train_acc_ema": report["training"]["train_acc_ema"]},
    )
    log.info("exported facecheck.v1 to %s", path.parent)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``faceswap-pipeline train facecheck ...``): one ``--dashed`` flag per config field."""
    p = argparse.ArgumentParser(prog="faceswap-pipeline train facecheck", description=__doc__.split("\n")[0])
    config.add_config_args(p, FaceCheckConfig, switches=("export", "bf16"))
    cfg = config.config_from_args(p.parse_args(argv), FaceCheckConfig)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(cfg, argv), indent=2))
    return 0


__all__ = ["CKPT_FORMAT", "FaceCheckConfig", "build_samples", "choose_threshold", "main", "probs", "run", "train"]

if __name__ == "__main__":
    sys.exit(main())

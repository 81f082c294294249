"""Train the CNN face-detection cascade (12/24/48 nets + calibration nets) with hard-negative mining.

Data (paths are arguments):

* **Positives**: UTKFace chips of the project's *train* split
  (:func:`faceswap_pipeline.train.splits.is_validation` is False). Each chip is flipped at random,
  rotated (60 % of them uniformly in +-40 degrees, the rest +-5), scaled so its face window is ``face_px`` pixels and
  pasted with a feathered edge onto a random non-face background (so windows see context and no
  chip border). The face window is the cascade's canonical square: centre/side of dlib HOG's mean
  box on UTKFace chips (``window`` in the config). From each composite: jittered face windows
  (detection positives), windows perturbed by random calibration patterns (calibration samples,
  label = pattern), and windows overlapping the face window by IoU < 0.3 (negatives, often parts
  of faces).
* **Negatives**: random windows of the non-face photos (90 % of them; every 10th is held out to
  measure false positives), then **hard negatives**: the 24-net trains on what the trained
  12-net + 12-cal let through on those photos, the 48-net on what 12 + 24 let through.
* A few hundred train-split chips are held out (``dev_faces``) to choose each level's threshold
  (recall targets) and report metrics. No CMU+MIT image is used.

All crops are made with the detector's own :func:`~faceswap_pipeline.ops.windows.crop_windows`.
Augmentation: random greyscale (CMU+MIT and the non-face set are grey), flips (detection nets),
contrast/brightness. Then the HOG-framing box transform is fitted on train-split chips (both
detectors on the same images) and everything is exported to ``weights/`` (fp16).

The pieces: :mod:`.cascade_config` (config and flags), :mod:`.cascade_data` (samples and
mining), :mod:`.window_classifier` (augmentation and the training loop shared with the face
check), :mod:`.cascade_calibrate` (thresholds, framing); this module runs them in order, resumes
from the run folder's per-net checkpoints and exports.

Run: ``python -m faceswap_pipeline.train.cascade --utk DIR --nonface DIR --threads 1 --export``.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceswap_pipeline.train.cascade_calibrate import (
    cal_accuracy,
    dev_face_prob,
    fit_framing,
    threshold_for_recall,
    threshold_for_recall_strata,
)
from faceswap_pipeline.train.cascade_config import SIZES, CascadeTrainConfig, parse_config
from faceswap_pipeline.train.cascade_data import (
    face_samples,
    fddb_samples,
    load_images,
    mine,
    mine_photos,
    nonface_files,
    nonface_samples,
    utk_train_files,
)
from faceswap_pipeline.train.checkpoint import atomic_save, load_checkpoint, save_checkpoint
from faceswap_pipeline.train.colour_data import read_rgb
from faceswap_pipeline.train.loop import RunClock
from faceswap_pipeline.train.runlog import RunWriter
from faceswap_pipeline.train.window_classifier import augment, face_prob, train_classifier

log = logging.getLogger(__name__)

CKPT_FORMAT = "faceswap_pipeline/cascade-member-ckpt/1"
"""Format tag of a trained member's checkpoint (``<out>/ckpt/<member>.pt``: ``state_dict``, ``info``)."""


def train_net(
    name: str, net: nn.Module, data: dict[str, torch.Tensor], cfg: CascadeTrainConfig, seed: int, writer: RunWriter | None = None
) -> dict[str, Any]:
    """Train one member. Detection nets: ``data["pos"], data["neg"]``; calibration: ``data["x"], data["y"]``.

    Windows are uint8 ``(N, 3, S, S)``; calibration labels ``data["y"]`` int64 pattern indices.
    A detection batch is ``pos_fraction`` positives (label 1), the rest negatives (label 0).
    """
    bs = cfg.batch[name]
    is_cal = name.endswith("cal")

    def batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if is_cal:
            i = torch.randint(0, data["x"].shape[0], (bs,), generator=g)
            x = augment(data["x"][i], g, cfg.grey_prob, flip=False, light_prob=cfg.light_prob, blur_prob=cfg.blur_prob)
            return x, data["y"][i]
        npos = int(bs * cfg.pos_fraction)
        ip = torch.randint(0, data["pos"].shape[0], (npos,), generator=g)
        ineg = torch.randint(0, data["neg"].shape[0], (bs - npos,), generator=g)
        x = augment(torch.cat([data["pos"][ip], data["neg"][ineg]]), g, cfg.grey_prob, flip=True,
                    occlude_prob=cfg.occlude_prob, light_prob=cfg.light_prob, blur_prob=cfg.blur_prob)
        return x, torch.cat([torch.ones(npos, dtype=torch.long), torch.zeros(bs - npos, dtype=torch.long)])

    return train_classifier(net, batch, name=name, steps=cfg.steps[name], lr=cfg.lr, weight_decay=cfg.weight_decay,
                            budget_s=cfg.minutes[name] * 60, seed=seed, channels_last=cfg.channels_last, bf16=cfg.bf16, writer=writer)


def build_nets(cfg: CascadeTrainConfig) -> dict[str, nn.Module]:
    """The six untrained members (``cfg.nets`` gives the 24/48-net widths)."""
    import faceswap_pipeline.archs  # noqa: F401
    from faceswap_pipeline.archs.cascade import NETS
    from faceswap_pipeline.registry import ARCHS

    return {m: ARCHS.get(NETS[m])(**cfg.nets.get(m, {})) for m in NETS}


def run(cfg: CascadeTrainConfig, argv: list[str] | None = None) -> dict[str, Any]:
    """Generate samples, train the six nets in order with mining, fit framing, optionally export."""
    from faceswap_pipeline.stages.detect_cascade import CascadeDetector, images_to_batch

    clock = RunClock()
    out = Path(cfg.out)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    writer = RunWriter(out)

    files = utk_train_files(cfg.utk)
    perm = np.random.default_rng(cfg.seed).permutation(len(files))
    dev_files = [files[i] for i in perm[: cfg.dev_faces]]
    train_files = [files[i] for i in perm[cfg.dev_faces : cfg.dev_faces + cfg.n_faces]] if cfg.n_faces else [files[i] for i in perm[cfg.dev_faces :]]
    nf_train, nf_hold = nonface_files(cfg.nonface)
    if cfg.max_nonface:
        nf_train, nf_hold = nf_train[: cfg.max_nonface], nf_hold[: max(1, cfg.max_nonface // 9)]
    log.info("UTK train split: %d files (%d train, %d dev); non-face: %d train, %d held out", len(files), len(train_files), len(dev_files), len(nf_train), len(nf_hold))
    bgs = load_images(nf_train)
    mine_bgs = list(bgs)
    colour_files: list[Path] = []
    if cfg.nonface_colour or cfg.scenes:
        from faceswap_pipeline.train.colour_data import half_split, image_files

        if cfg.nonface_colour:
            colour_files += half_split(image_files(cfg.nonface_colour))[0]
        if cfg.scenes:
            colour_files += image_files(cfg.scenes)
        colour_bgs = load_images(colour_files)
        mine_bgs += colour_bgs
        bgs += colour_bgs * max(1, int(cfg.colour_repeat))  # colour as often as the grey photos' share warrants
        log.info("colour non-face photos: %d (x%d as backgrounds/negatives)", len(colour_files), cfg.colour_repeat)
    fddb_train: list[tuple[Path, np.ndarray]] = []
    if cfg.fddb:
        from faceswap_pipeline.train.colour_data import fddb_items

        fddb_train = fddb_items(cfg.fddb, "train")

    cache = out / "samples.pt"
    if cache.is_file():
        S = torch.load(cache, weights_only=True)
        log.info("loaded samples from %s", cache)
    else:
        t = clock.session_s()
        S = {f"face_{k}": v for k, v in face_samples(train_files, bgs, cfg, cfg.seed).items()}
        S.update({f"dev_{k}": v for k, v in face_samples(dev_files, bgs, cfg, cfg.seed + 1).items()})
        S.update({f"nf_{k}": v for k, v in nonface_samples(bgs, cfg, cfg.seed + 2).items()})
        if fddb_train:
            S.update({f"fddb_{k}": v for k, v in fddb_samples(fddb_train, cfg, cfg.seed + 3).items()})
        atomic_save(S, cache)
        log.info("samples made in %.0f s: %s", clock.session_s() - t, {k: tuple(v.shape) for k, v in S.items()})

    nets = build_nets(cfg)
    if cfg.init:
        from faceswap_pipeline.weights import load_model

        for m in nets:
            nets[m].load_state_dict(load_model(f"cascade.{m}", cfg.init).float().state_dict())
        log.info("initialised the six nets from %s", cfg.init)

    def pool(kind: str, s: int) -> list[torch.Tensor]:
        """The face-derived tensors of a kind: composites (+ FDDB train-half photos)."""
        return [S[f"face_{kind}{s}"]] + ([S[f"fddb_{kind}{s}"]] if f"fddb_{kind}{s}" in S else [])

    def negs(s: int) -> list[torch.Tensor]:
        return [S[f"nf_neg{s}"], S[f"face_neg{s}"]] + ([S[f"fddb_neg{s}"]] if f"fddb_neg{s}" in S else [])

    def mine_all(det: Any, stages: int, size: int, seed: int) -> dict[int, torch.Tensor]:
        got = mine(det, mine_bgs, stages, (size,), cfg.max_mined, seed)[size]
        if fddb_train:
            got = torch.cat([got, mine_photos(det, fddb_train, stages, (size,))[size]])
        if got.shape[0] > cfg.max_mined:
            got = got[torch.randperm(got.shape[0], generator=torch.Generator().manual_seed(seed))[: cfg.max_mined]]
        return {size: got}
    report: dict[str, Any] = {"members": {}, "faces": {"train": len(train_files), "dev": len(dev_files)}}
    prev = json.loads((out / "report.json").read_text()).get("members", {}) if (out / "report.json").is_file() else {}
    thresholds = [0.5, 0.5, 0.5]
    strata: dict[str, dict[str, float]] = {}

    def level_threshold(pdev: torch.Tensor, level: int) -> float:
        if cfg.threshold_strata and "dev_pos_angle" in S and (12, 24, 48)[level] in tuple(cfg.threshold_strata_levels):
            t, per = threshold_for_recall_strata(pdev, S["dev_pos_angle"], cfg.recall[level], tuple(cfg.threshold_strata))
            strata[("12net", "24net", "48net")[level]] = {k: round(v, 4) for k, v in per.items()}
            return t
        return threshold_for_recall(pdev, cfg.recall[level])

    def ckpt(m: str) -> Path:
        return out / "ckpt" / f"{m}.pt"

    def fit(m: str, data: dict[str, torch.Tensor], seed: int) -> dict[str, Any]:
        if ckpt(m).is_file():
            blob = load_checkpoint(ckpt(m), CKPT_FORMAT, f"cascade {m}")
            nets[m].load_state_dict(blob["state_dict"])
            nets[m].eval()
            log.info("%s: resumed from checkpoint", m)
            return blob["info"]
        info = train_net(m, nets[m], data, cfg, seed, writer)
        save_checkpoint({"state_dict": nets[m].state_dict(), "info": info}, ckpt(m), CKPT_FORMAT)
        return info

    def cal_data(s: int) -> dict[str, torch.Tensor]:
        y = [S["face_cal_label"]] + ([S["fddb_cal_label"]] if "fddb_cal_label" in S else [])
        return {"x": torch.cat(pool("cal", s)), "y": torch.cat(y)}

    # ---- level 12
    info = fit("12net", {"pos": torch.cat(pool("pos", 12)), "neg": torch.cat(negs(12))}, cfg.seed + 10)
    pdev = dev_face_prob(nets["12net"], S["dev_pos12"], cfg.seed + 40)
    thresholds[0] = level_threshold(pdev, 0)
    info["dev_neg_reject"] = round(float((face_prob(nets["12net"], S["dev_neg12"]) <= thresholds[0]).float().mean()), 4)
    report["members"]["12net"] = {**info, "threshold": thresholds[0], "dev_recall": cfg.recall[0]}
    info = fit("12cal", cal_data(12), cfg.seed + 11)
    report["members"]["12cal"] = {**info, "dev_acc": round(cal_accuracy(nets["12cal"], S["dev_cal12"], S["dev_cal_label"]), 4)}
    log.info("12: %s", report["members"])

    # ---- levels 24 and 48: mine what the earlier levels let through, train the net, its threshold, its calibration net.
    # Mining, held-out false positives and the framing fit run in float32 on every machine.
    for level, size, (net_seed, cal_seed, mine_seed) in ((1, 24, (12, 13, 20)), (2, 48, (14, 15, 21))):
        net_name, cal_name = f"{size}net", f"{size}cal"
        earlier = ("12net", "12cal", "24net", "24cal")[: 2 * level]
        det = CascadeDetector(min_face=cfg.mine_min_face, thresholds=thresholds, nets={k: nets[k] for k in earlier}, precision="fp32")
        mined = mine_all(det, level, size, cfg.seed + mine_seed) if not ckpt(net_name).is_file() else {size: torch.zeros((0, 3, size, size), dtype=torch.uint8)}
        neg = torch.cat([mined[size], *negs(size)])
        info = fit(net_name, {"pos": torch.cat(pool("pos", size)), "neg": neg}, cfg.seed + net_seed)
        pdev = dev_face_prob(nets[net_name], S[f"dev_pos{size}"], cfg.seed + 40)
        thresholds[level] = level_threshold(pdev, level)
        report["members"][net_name] = {**info, "threshold": thresholds[level],
                                       "mined_negatives": int(mined[size].shape[0]) or prev.get(net_name, {}).get("mined_negatives", 0)}
        del mined, neg
        info = fit(cal_name, cal_data(size), cfg.seed + cal_seed)
        report["members"][cal_name] = {**info, "dev_acc": round(cal_accuracy(nets[cal_name], S[f"dev_cal{size}"], S["dev_cal_label"]), 4)}
        log.info("%d: %s", size, report["members"])
    report["thresholds"] = [round(t, 4) for t in thresholds]
    if strata:
        report["threshold_strata"] = strata

    # ---- whole-cascade metrics: false positives on held-out non-face photos
    det = CascadeDetector(min_face=cfg.mine_min_face, thresholds=thresholds, nets=nets, precision="fp32")
    fp, n_img = 0, 0
    with torch.inference_mode():
        for p in nf_hold:
            b, sh = images_to_batch([read_rgb(p)])
            fp += len(det.raw_detect(b, sh))
            n_img += 1
    report["heldout_nonface_fp_per_image"] = round(fp / max(1, n_img), 4)
    report["heldout_nonface_images"] = n_img
    # ---- framing (on train-split chips not used as dev)
    fr_files = [files[i] for i in perm[cfg.dev_faces : cfg.dev_faces + cfg.framing_faces]]
    det_f = CascadeDetector(min_face=60, thresholds=thresholds, nets=nets, framing={"ax": 0.0, "ay": 0.0, "sw": 1.0, "sh": 1.0}, precision="fp32")
    framing = fit_framing(det_f, fr_files, bgs, cfg, cfg.seed + 30)
    report["framing"] = framing
    report["wall_time_s"] = round(clock.session_s(), 1)  # this invocation (a resumed run skips trained nets)
    report["nets_train_time_s"] = round(sum(float(m.get("wall_time_s", 0.0)) for m in report["members"].values()), 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("report: %s", json.dumps(report))
    if cfg.export:
        export(nets, cfg, report, argv)
    writer.close()
    return report


def export(nets: dict[str, nn.Module], cfg: CascadeTrainConfig, report: dict[str, Any], argv: list[str] | None) -> None:
    """Write ``weights/cascade_<member>.safetensors`` (fp16) and their manifest entries."""
    from faceswap_pipeline.archs.cascade import NETS
    from faceswap_pipeline.machine import describe_machine
    from faceswap_pipeline.train.export import export_model

    cmd = "python -m faceswap_pipeline.train.cascade " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"{describe_machine('cpu')}, torch {torch.__version__}"
    folder = None
    for m, net in nets.items():
        kw = dict(cfg.nets.get(m, {}))
        info = report["members"][m]
        fields: dict[str, Any] = {
            "io": {"input": [3, SIZES[m], SIZES[m]], "range": [0, 1], "output": "logits (2: [non-face, face])" if m.endswith("net") else "logits (45 calibration classes)"},
            "training": {
                "command": cmd,
                "data": "UTKFace train split (faceswap_pipeline.train.splits, validation excluded) composited on non-face photos; non-face photos (every 10th held out); hard negatives mined by the earlier levels",
                "split": f"train split, {report['faces']['train']} faces for training, {cfg.dev_faces} held out for thresholds",
                "steps": info["steps"],
                "batch": cfg.batch[m],
                "wall_time_s": info["wall_time_s"],
                "machine": machine,
                "seed": cfg.seed,
            },
            "metrics": {k: v for k, v in info.items() if k not in ("steps", "wall_time_s")},
        }
        if m == "12net":
            fields["cascade"] = {
                "thresholds": report["thresholds"],
                "framing": {k: report["framing"][k] for k in ("ax", "ay", "sw", "sh")},
                "framing_fit": report["framing"],
                "window": {"utk_chip_cx_cy_side": list(cfg.window), "note": "square window = mean dlib HOG box on UTKFace chips"},
                "heldout_nonface_fp_per_image": report["heldout_nonface_fp_per_image"],
                "min_face_trained": cfg.mine_min_face,
            }
            if report.get("threshold_strata"):
                fields["cascade"]["threshold_strata"] = {"edges_deg": list(cfg.threshold_strata), "per_stratum": report["threshold_strata"]}
        path, _ = export_model(net, f"cascade.{m}", cfg.weights_dir, file=f"cascade_{m}.safetensors", arch=NETS[m], kwargs=kw, storage="fp16", **fields)
        folder = path.parent
    log.info("exported six nets to %s", folder)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``faceswap-pipeline train cascade ...``); prints the final report as JSON."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = parse_config(argv)
    report = run(cfg, argv)
    print(json.dumps(report, indent=2))
    return 0


__all__ = ["CKPT_FORMAT", "build_nets", "export", "main", "run", "train_net"]

if __name__ == "__main__":
    sys.exit(main())

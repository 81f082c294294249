"""Ship a CycleGAN run: both generators as weights + manifest entries, and their metrics on validation faces.

``python -m faceswap_pipeline.train.cyclegan --export runs/m2f/last.pt --out-dir weights`` runs
:func:`main_export`: :func:`export` writes the generators, :func:`evaluate_export` measures the
stored (quantised) generators against the checkpoint's fp32 ones, then the entries are written
again with the metrics.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceswap_pipeline.archs.cyclegan import ResnetGenerator
from faceswap_pipeline.ops.geometry import CHIP_RESCALE
from faceswap_pipeline.train.cyclegan_data import load_domain
from faceswap_pipeline.train.evaluate import contact_sheet, pair_probs, translate_faces
from faceswap_pipeline.train.export import export_model
from faceswap_pipeline.train.packs import read_pack


def generator_state(ck: dict[str, Any], net: str) -> dict[str, torch.Tensor]:
    """A checkpoint's weights of generator ``net`` (``G_m2f`` / ``G_f2m``): its average when the run kept one."""
    avg = ck.get("ema", {}).get(net) if int(ck.get("ema_steps", 0)) > 0 else None
    return avg if avg is not None else ck[net]


def export(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = "weights",
    storage: str = "int8",
    *,
    metrics: dict[str, dict[str, Any]] | None = None,
    framing: dict[str, Any] | None = None,
    command: str = "",
    data: str = "",
    split: str = "faceswap_pipeline.train.splits (sha1 of file name, 10% validation)",
    machine: str | None = None,
    feature_net: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write both generators of a checkpoint as shipped weights and register them in the manifest.

    Files: ``cyclegan_male2female.safetensors`` / ``cyclegan_female2male.safetensors`` in
    ``out_dir``; manifest names ``cyclegan.male2female`` / ``cyclegan.female2male``.

    Args:
        checkpoint: a trainer checkpoint (``last.pt``).
        out_dir: the weights folder.
        storage: ``int4`` (group-wise, ~4.5 bits a weight), ``int8`` (per-channel scales), ``fp16`` or ``fp32``;
            see :func:`faceswap_pipeline.weights.quantize_state_dict`.
        metrics: per direction (``"male2female"`` / ``"female2male"``) metric dicts.
        framing: the crop framing the training faces were made with (the packs' sidecar JSON).
        command, data, split, machine: provenance recorded under ``training`` (machine None: this
            CPU with the run's ``threads``).
        feature_net: the attribute network used for the perceptual identity loss and the target rate
            (name, folder, sha256).

    Returns:
        ``{"male2female": path, "female2male": path}``.
    """
    from faceswap_pipeline.machine import describe_machine
    from faceswap_pipeline.train.cyclegan import load_checkpoint

    ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    device = cfg.get("device", "auto")
    machine = machine or describe_machine(None if device == "auto" else device, cfg.get("threads") or None)
    kwargs = {"ngf": cfg["ngf"], "n_blocks": cfg["n_blocks"]}
    out: dict[str, Path] = {}
    names = (f"{cfg.get('domain_m', 'male')}2{cfg.get('domain_f', 'female')}", f"{cfg.get('domain_f', 'female')}2{cfg.get('domain_m', 'male')}")
    for direction, net in zip(names, ("G_m2f", "G_f2m")):
        path, _ = export_model(
            generator_state(ck, net), f"cyclegan.{direction}", out_dir, file=f"cyclegan_{direction}.safetensors", arch="cyclegan_resnet",
            kwargs=kwargs, storage=storage,
            io={"range": [-1, 1], "size": int(cfg["image_size"]), "layout": "(B, 3, H, W) RGB"},
            framing=framing or {},
            training={
                "command": command,
                "data": data,
                "split": split,
                "steps": int(ck["step"]),
                "generator_average": {"ema_decay": float(cfg.get("g_ema", 0.0)), "steps": int(ck.get("ema_steps", 0))},
                "batch_size": int(cfg["batch_size"]),
                "pairs_seen": int(ck["pairs_seen"]),
                "wall_time_s": round(float(ck["wall_time_s"]), 1),
                "machine": machine,
                "seed": int(cfg["seed"]),
                "config": cfg,
                "identity_feature_net": feature_net or {},
                "target_rate_history": ck.get("history", []),
            },
            metrics=(metrics or {}).get(direction, {}),
        )
        out[direction] = path
    return out


def evaluate_export(
    checkpoint: str | os.PathLike[str],
    weights_folder: str | os.PathLike[str],
    attr: nn.Module,
    val_m: torch.Tensor,
    val_f: torch.Tensor,
    identity_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    n_identity: int = 200,
    sheet_path: str | os.PathLike[str] | None = None,
    sheet_n: int = 32,
    judge: Any | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics of the shipped (stored) generators against the checkpoint's fp32 ones on validation faces.

    With ``judge`` (:class:`~faceswap_pipeline.train.judge.Judge`) each direction also gets the
    independent judge's target rate and the quality figures under ``"judge"`` (realism against
    the other domain's validation faces).

    For each direction: target rate of fp32 and stored models, mean |stored - fp32| of outputs
    (in [0, 1] pixel units), max abs difference, and optionally a mean identity distance
    (``identity_fn(real01, fake01)``) on the first ``n_identity`` faces. With ``sheet_path``, a
    contact sheet of the first ``sheet_n`` male faces before/after the stored ``male2female``
    generator is written (rows of 8 faces over their translations, 128 px tiles).
    """
    from faceswap_pipeline.train import evaluate
    from faceswap_pipeline.train.cyclegan import load_checkpoint
    from faceswap_pipeline.weights import load_model


    ck = load_checkpoint(checkpoint)
    cfg = ck["config"]
    res: dict[str, dict[str, Any]] = {}
    dm, df = cfg.get("domain_m", "male"), cfg.get("domain_f", "female")
    head, pair = cfg.get("attr_head", "gender"), (int(cfg.get("attr_class_m", 0)), int(cfg.get("attr_class_f", 1)))
    for direction, net, src, female in ((f"{dm}2{df}", "G_m2f", val_m, True), (f"{df}2{dm}", "G_f2m", val_f, False)):
        ref = ResnetGenerator(ngf=cfg["ngf"], n_blocks=cfg["n_blocks"]).eval()
        ref.load_state_dict(generator_state(ck, net))
        stored = load_model(f"cyclegan.{direction}", weights_folder)
        y_ref = translate_faces(ref, src)
        y_st = translate_faces(stored, src)
        p_ref = pair_probs(attr, y_ref, head, pair)
        p_st = pair_probs(attr, y_st, head, pair)
        p_src = pair_probs(attr, src.float() / 255.0, head, pair)
        voted = evaluate.target_rate(attr, y_st, df if female else dm, voting=True)
        hit = (lambda p: p > 0.5) if female else (lambda p: p <= 0.5)
        d = (y_st - y_ref).abs()
        m: dict[str, Any] = {
            "n_val_faces": len(src),
            "val_target_rate": round(float(hit(p_st).float().mean()), 4),
            "val_target_rate_voting45": round(float(voted), 4),
            "val_target_rate_fp32": round(float(hit(p_ref).float().mean()), 4),
            "val_target_rate_of_unchanged_input": round(float(hit(p_src).float().mean()), 4),
            "stored_vs_fp32_mean_abs_diff": float(d.mean()),
            "stored_vs_fp32_max_abs_diff": float(d.max()),
            "pixel_range_of_diffs": "[0, 1] image units",
        }
        if identity_fn is not None:
            k = min(n_identity, len(src))
            m["mean_identity_distance"] = round(float(identity_fn(src[:k].float() / 255.0, y_st[:k])), 4)
            m["n_identity_faces"] = k
        if judge is not None:
            from faceswap_pipeline.train.judge import describe

            to8 = lambda t: (t.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
            src8 = src.permute(0, 2, 3, 1).numpy()
            other = (val_f if female else val_m).permute(0, 2, 3, 1).numpy()
            m["judge"] = judge.score(src8, to8(y_st), direction, describe(other, judge.rescale)[0])
        if sheet_path is not None and net == "G_m2f":
            contact_sheet(src[:sheet_n].float() / 255.0, y_st[:sheet_n], sheet_path, palette=True)
            m["contact_sheet"] = str(sheet_path)
        res[direction] = m
    return res


def main_export(args: argparse.Namespace) -> int:
    """``--export CKPT``: write the generators, measure them on the validation packs, record the metrics."""
    from faceswap_pipeline.train.cyclegan import CycleGANConfig, config_from_args, load_attribute_net, load_checkpoint

    ck = load_checkpoint(args.export)
    cfg = config_from_args(args, CycleGANConfig(**ck["config"]))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    meta = read_pack(cfg.pack_m)[2] if cfg.pack_m and Path(cfg.pack_m).is_file() else {}
    framing = meta.get("framing", {k: meta[k] for k in ("rescale", "size", "detector", "upsample") if k in meta})
    command = str(ck.get("command", ""))
    paths = export(args.export, args.out_dir, args.storage, framing=framing, command=command, feature_net=None,
                   data=f"{cfg.pack_m} [{cfg.select_m}] / {cfg.pack_f} [{cfg.select_f}]")
    try:
        from faceswap_pipeline.weights import model_entry

        feat = {"name": cfg.attr_name, "folder": cfg.attr_weights, "sha256": model_entry(cfg.attr_name, cfg.attr_weights or None)["sha256"]}
    except Exception:  # noqa: BLE001 - provenance only
        feat = {"name": cfg.attr_name, "folder": cfg.attr_weights}
    if cfg.val_pack_m and cfg.val_pack_f:
        n = args.eval_n or 0
        val_m = load_domain(cfg.val_pack_m, cfg.val_select_m or cfg.select_m, n)
        val_f = load_domain(cfg.val_pack_f, cfg.val_select_f or cfg.select_f, n)
        from faceswap_pipeline.train.judge import JUDGE_NAME, Judge
        from faceswap_pipeline.weights import has_model

        judge = Judge(rescale=tuple(framing.get("rescale", CHIP_RESCALE))) if has_model(JUDGE_NAME) else None
        metrics = evaluate_export(args.export, args.out_dir, load_attribute_net(cfg), val_m, val_f,
                                  identity_fn=identity_fn(framing), n_identity=args.identity_n, sheet_path=args.sheet or None,
                                  judge=judge)
        export(args.export, args.out_dir, args.storage, metrics=metrics, framing=framing, command=command, feature_net=feat,
               data=f"{cfg.pack_m} [{cfg.select_m}] / {cfg.pack_f} [{cfg.select_f}]")
        print(json.dumps(metrics, indent=2), flush=True)
    print(json.dumps({k: str(v) for k, v in paths.items()}), flush=True)
    return 0


def identity_fn(framing: dict[str, Any] | None = None) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """Mean dlib face-descriptor distance between real and translated faces (``train/evaluate.py``)."""
    from faceswap_pipeline.train import evaluate

    rescale = tuple((framing or {}).get("rescale", CHIP_RESCALE))
    return lambda a, b: float(np.mean(evaluate.identity_distance(a, b, rescale)))


__all__ = ["evaluate_export", "export", "generator_state", "identity_fn", "main_export"]

"""``faceswap-pipeline train attributes``: the face attribute network (gender, race, age).

The original classifier design's recipe: a small BatchNorm CNN (:class:`~faceswap_pipeline.archs.attributes.AttributeNet`),
heavy augmentation (:func:`~faceswap_pipeline.ops.augment.augment_faces`), and 45-window
test-time voting at inference. Losses: cross-entropy on gender and race + smooth-L1 on age / 10.
Trained on the ``train`` pack, validated on the ``val`` pack written by ``prepare``.

After every epoch the weights are exported (fp16 safetensors) and registered in the manifest with
per-group validation accuracies, so other trainers can use the network while it still trains.
Runs are time-boxed (``--max-minutes``), checkpointed and resumable; every step's randomness is
derived from ``(seed, step)``, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from faceswap_pipeline.labels import GENDERS, RACES
from faceswap_pipeline.ops.augment import AugmentConfig, augment_faces
from faceswap_pipeline.train import config
from faceswap_pipeline.train.checkpoint import atomic_save
from faceswap_pipeline.train.loop import RunClock, StopOnSignal
from faceswap_pipeline.train.runlog import RunWriter

log = logging.getLogger(__name__)

ARCH = "attribute_cnn"
AGE_SCALE = 10.0


@dataclass
class AttributesConfig:
    """Everything that defines a training run (saved as ``config.json`` in the run folder).

    Attributes:
        train_pack, val_pack: packs written by ``faceswap-pipeline prepare``.
        run_dir: checkpoints, TensorBoard logs, config.
        weights_dir: where the exported weights and manifest entry go.
        name: manifest name of the exported model.
        width, in_size, dropout: :class:`AttributeNet` hyper-parameters.
        epochs: planned epochs (the cosine learning-rate schedule spans them).
        batch_size, lr, weight_decay: AdamW settings.
        gender_weight, race_weight, age_weight: loss weights (age loss is on years / 10).
        seed: fixes initialisation, data order, augmentation and dropout.
        threads: torch CPU threads (None: torch's default).
        max_minutes: stop cleanly (checkpoint + export) after this much wall time (None: no limit).
        max_steps: planned steps in total (None: ``epochs`` worth); the schedule spans them.
        stop_at_step: stop cleanly (checkpoint + export) at this step without changing the
            schedule, so a later run with the same config resumes exactly (None: run to the end).
        limit_train: use only the first N training faces (quick checks).
        ckpt_every: also checkpoint every N steps (besides every epoch and at the end).
        export: export + register the weights after every epoch and at the end.
        augment: augmentation ranges.
    """

    train_pack: str = "data_cache/packs/utk_train.npz"
    val_pack: str = "data_cache/packs/utk_val.npz"
    run_dir: str = "runs/attributes"
    weights_dir: str = "weights"
    name: str = "attributes.v1"
    width: int = 32
    in_size: int = 48
    dropout: float = 0.4
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    gender_weight: float = 1.0
    race_weight: float = 1.0
    age_weight: float = 0.5
    seed: int = 0
    threads: int | None = None
    max_minutes: float | None = None
    max_steps: int | None = None
    stop_at_step: int | None = None
    limit_train: int | None = None
    ckpt_every: int = 200
    export: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def _to_input(images_u8: np.ndarray, size: int) -> torch.Tensor:
    """``(N, S, S, 3)`` uint8 -> ``(N, 3, size, size)`` uint8, resized like the network does (bilinear, antialias)."""
    out = []
    for i in range(0, len(images_u8), 512):
        x = torch.from_numpy(images_u8[i : i + 512]).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else torch.zeros(0, 3, size, size, dtype=torch.uint8)


def load_split(path: str, size: int, limit: int | None = None) -> dict[str, torch.Tensor]:
    """Decode a pack into ``{"x": (N, 3, size, size) uint8, "gender", "race", "age"}`` tensors."""
    from faceswap_pipeline.train.packs import FacePack

    pack = FacePack(path)
    idx = np.arange(len(pack) if limit is None else min(limit, len(pack)))
    x = _to_input(pack.images(idx), size)
    lab = pack.labels
    return {
        "x": x,
        "gender": torch.from_numpy(lab["gender"][idx].astype(np.int64)),
        "race": torch.from_numpy(lab["race"][idx].astype(np.int64)),
        "age": torch.from_numpy(lab["age"][idx].astype(np.float32)),
    }


def attribute_loss(out: dict[str, torch.Tensor], gender: torch.Tensor, race: torch.Tensor, age: torch.Tensor,
                   cfg: AttributesConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of CE(gender) + CE(race) + smooth-L1(age / 10); returns (loss, parts)."""
    lg = F.cross_entropy(out["gender"], gender)
    lr_ = F.cross_entropy(out["race"], race)
    la = F.smooth_l1_loss(out["age"] / AGE_SCALE, age / AGE_SCALE)
    loss = cfg.gender_weight * lg + cfg.race_weight * lr_ + cfg.age_weight * la
    return loss, {"gender": lg.item(), "race": lr_.item(), "age": la.item()}


def group_metrics(p_gender: torch.Tensor, p_race: torch.Tensor, age_pred: torch.Tensor, gender: torch.Tensor,
                  race: torch.Tensor, age: torch.Tensor) -> dict[str, Any]:
    """Validation accuracies overall and per group.

    Returns:
        ``gender_acc``, ``race_acc``, ``age_mae``; ``gender_acc_by_race`` (5 groups),
        ``race_acc_by_gender`` (2 groups), ``gender_acc_age_18_70``, ``age_mae_by_race``, ``n``.
    """
    gp, rp = p_gender.argmax(1), p_race.argmax(1)
    gok, rok = (gp == gender).float(), (rp == race).float()
    err = (age_pred - age).abs()
    adult = (age >= 18) & (age <= 70)

    def m(v: torch.Tensor, mask: torch.Tensor) -> float | None:
        return round(float(v[mask].mean()), 4) if bool(mask.any()) else None

    return {
        "n": int(len(gender)),
        "gender_acc": m(gok, torch.ones_like(adult)),
        "race_acc": m(rok, torch.ones_like(adult)),
        "age_mae": round(float(err.mean()), 2) if len(err) else None,
        "gender_acc_age_18_70": m(gok, adult),
        "gender_acc_by_race": {rn: m(gok, race == i) for i, rn in enumerate(RACES)},
        "race_acc_by_gender": {gn: m(rok, gender == i) for i, gn in enumerate(GENDERS)},
        "race_acc_by_race": {rn: m(rok, race == i) for i, rn in enumerate(RACES)},
        "age_mae_by_race": {rn: (round(float(err[race == i].mean()), 2) if bool((race == i).any()) else None)
                            for i, rn in enumerate(RACES)},
    }


@torch.no_grad()
def evaluate_split(model: torch.nn.Module, data: dict[str, torch.Tensor], voting: bool = False, batch_size: int = 256) -> dict[str, Any]:
    """Per-group validation metrics of ``model`` on a decoded split (see :func:`group_metrics`)."""
    from faceswap_pipeline.stages.classify import predict

    was = model.training
    model.eval()
    x = data["x"].float().div_(255.0)
    p = predict(model, x, voting=voting, batch_size=batch_size if not voting else max(1, batch_size // 16))
    model.train(was)
    return group_metrics(p["gender"], p["race"], p["age"], data["gender"], data["race"], data["age"])


def _config_from_dict(d: dict[str, Any]) -> AttributesConfig:
    d = dict(d)
    aug = d.pop("augment", {})
    if "scale" in aug:
        aug["scale"] = tuple(aug["scale"])
    return AttributesConfig(**d, augment=AugmentConfig(**aug))


def export(model: torch.nn.Module, cfg: AttributesConfig, metrics: dict[str, Any], step: int, epoch: float,
           wall: float, framing: dict[str, Any] | None) -> Path:
    """Write ``<weights_dir>/<name with _>.safetensors`` (fp16) and register it in the manifest."""
    from faceswap_pipeline.weights import register_weights, save_weights

    fname = cfg.name.replace(".", "_") + ".safetensors"
    path = Path(cfg.weights_dir) / fname
    kwargs = {"width": cfg.width, "in_size": cfg.in_size, "dropout": cfg.dropout}
    sha = save_weights(model, path, arch=ARCH, kwargs=kwargs, storage="fp16")
    entry = {
        "file": fname,
        "sha256": sha,
        "arch": ARCH,
        "kwargs": kwargs,
        "storage": "fp16",
        "io": {"range": [0, 1], "size": 128, "layout": "BCHW RGB", "outputs": {"gender": ["male", "female"], "race": list(RACES), "age": "years"},
               "voting": {"windows": 45, "scales": [0.9, 0.95, 1.0, 1.05, 1.1], "shift": 0.04}},
        "framing": framing,
        "training": {
            "command": "faceswap-pipeline train attributes " + " ".join(sys.argv[1:]) if sys.argv else "",
            "data": f"{Path(cfg.train_pack).name} (UTKFace train/, prepare packs)",
            "split": "faceswap_pipeline.train.splits.is_validation (sha1 of file name, 10%)",
            "steps": step,
            "epochs": round(epoch, 3),
            "wall_time_s": round(wall, 1),
            "machine": "2-core AMD EPYC CPU, no GPU, 1 torch thread",
            "seed": cfg.seed,
        },
        "metrics": metrics,
        "notes": "Project stand-in for VGG-16 perceptual features (features(x): 4 conv-block maps); no pretrained VGG-16 can be downloaded here.",
    }
    register_weights(cfg.name, entry, weights_dir=cfg.weights_dir)
    return path


def train(cfg: AttributesConfig) -> dict[str, Any]:
    """Train (or resume) according to ``cfg``; returns the final validation metrics."""
    import faceswap_pipeline.archs  # noqa: F401
    from faceswap_pipeline.registry import ARCHS

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n", encoding="utf-8")
    session = RunClock()  # this session's wall time (data loading included): the max_minutes budget

    tr = load_split(cfg.train_pack, cfg.in_size, cfg.limit_train)
    va = load_split(cfg.val_pack, cfg.in_size)
    from faceswap_pipeline.train.packs import FacePack

    framing = FacePack(cfg.train_pack).meta.get("framing")
    n = len(tr["gender"])
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    log.info("train %d faces, val %d faces, %d steps/epoch, %d steps planned (data %.1f s)", n, len(va["gender"]), steps_per_epoch, total, session.session_s())

    torch.manual_seed(cfg.seed)
    model = ARCHS.get(ARCH)(width=cfg.width, in_size=cfg.in_size, dropout=cfg.dropout)
    with torch.no_grad():
        model.age.bias.fill_(float(tr["age"].mean()) if n else 30.0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / max(1, total))) if s >= 100 else (s + 1) / 100)
    step, wall_before, history = 0, 0.0, []
    ckpt = run / "last.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, wall_before, history = int(state["step"]), float(state["wall_time_s"]), json.loads(state["history"])
        log.info("resumed from %s at step %d", ckpt, step)

    tb = RunWriter(run)

    def save_ckpt() -> None:
        atomic_save({"format": 1, "arch": ARCH, "config": json.dumps(dataclasses.asdict(cfg)), "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                     "wall_time_s": clock.wall_s(), "history": json.dumps(history)}, ckpt)

    def end_epoch(final: bool) -> dict[str, Any]:
        met = evaluate_split(model, va)
        epoch = step / steps_per_epoch
        wall = clock.wall_s()
        history.append({"step": step, "epoch": round(epoch, 3), "wall_time_s": round(wall, 1), **{k: met[k] for k in ("gender_acc", "race_acc", "age_mae")}})
        tb.scalars({k: met[k] for k in ("gender_acc", "race_acc", "age_mae", "gender_acc_age_18_70") if met[k] is not None}, step, prefix="val/")
        log.info("step %d (epoch %.2f): val gender %.4f race %.4f age MAE %.2f", step, epoch, met["gender_acc"], met["race_acc"], met["age_mae"])
        save_ckpt()
        if cfg.export:
            metrics = {"val_single_pass": met, "history": history}
            p = export(model, cfg, metrics, step, epoch, wall, framing)
            log.info("exported %s", p)
        (run / "metrics.json").write_text(json.dumps({"final": final, "val_single_pass": met, "history": history}, indent=2) + "\n")
        return met

    clock = RunClock(wall_s=wall_before)  # the run's training wall time, across resumes
    t_last = time.perf_counter()
    model.train()
    gen = torch.Generator()
    met: dict[str, Any] = {}
    with StopOnSignal() as stop:
        while step < total:
            epoch_i = step // steps_per_epoch
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch_i))
            j = step % steps_per_epoch
            idx = perm[j * cfg.batch_size : (j + 1) * cfg.batch_size]
            gen.manual_seed(cfg.seed * 1_000_003 + step)
            torch.manual_seed(cfg.seed * 1_000_033 + step)  # dropout
            x = augment_faces(tr["x"][idx].float().div_(255.0), cfg.augment, gen)
            out = model(x)
            loss, parts = attribute_loss(out, tr["gender"][idx], tr["race"][idx], tr["age"][idx], cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                tb.scalars({"loss": loss.item(), **parts, "lr": opt.param_groups[0]["lr"]}, step, prefix="train/")
            if step % 100 == 0:
                log.info("step %d/%d loss %.4f (g %.3f r %.3f a %.3f) %.1f img/s", step, total, loss.item(), parts["gender"], parts["race"], parts["age"],
                         100 * cfg.batch_size / max(1e-6, time.perf_counter() - t_last))
                t_last = time.perf_counter()
            timed_out = ((cfg.max_minutes is not None and session.session_s() > 60.0 * cfg.max_minutes)
                         or (cfg.stop_at_step is not None and step >= cfg.stop_at_step) or bool(stop))
            if step % steps_per_epoch == 0 or step == total or timed_out:
                met = end_epoch(final=step == total or timed_out)
            elif step % cfg.ckpt_every == 0:
                save_ckpt()
            if timed_out:
                log.info("stopping at step %d (time limit, stop_at_step or a signal)", step)
                break
    if not met:  # resumed at the end: nothing ran
        met = evaluate_split(model, va)
    tb.close()
    return met


def build_parser() -> argparse.ArgumentParser:
    """CLI flags generated from :class:`AttributesConfig` (``--config file.json`` sets defaults)."""
    p = argparse.ArgumentParser(prog="faceswap-pipeline train attributes", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="JSON config (as saved in a run folder); flags override it")
    config.add_config_args(p, AttributesConfig)
    p.add_argument("--final-voting-eval", action="store_true", help="after training, also evaluate with 45-window voting and record it")
    p.add_argument("--voting-eval-n", type=int, default=400, help="val faces for the voting evaluation (0 = all; ~1 s per face)")
    p.add_argument("--eval-only", action="store_true", help="skip training; only run the voting evaluation of the exported model")
    return p


def main(argv: list[str] | None = None) -> int:
    """Train the attribute network; prints the final validation metrics as JSON."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = _config_from_dict(json.loads(Path(args.config).read_text(encoding="utf-8"))) if args.config else None
    cfg = config.config_from_args(args, AttributesConfig, base)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    met = {} if args.eval_only else train(cfg)
    if args.final_voting_eval or args.eval_only:
        met = final_voting_eval(cfg, args.voting_eval_n)
    print(json.dumps({k: met[k] for k in ("gender_acc", "race_acc", "age_mae") if k in met}))
    return 0


def final_voting_eval(cfg: AttributesConfig, n: int = 400) -> dict[str, Any]:
    """Evaluate the exported model with 45-window voting and with one pass on the same val faces.

    Voting costs 45 forward passes per face (~1 s per face on one busy CPU thread), so by default a
    fixed random subset of ``n`` validation faces (seed ``cfg.seed``) is used; ``n = 0`` uses all.
    Both results are recorded in the model's manifest entry (``val_voting45`` and
    ``val_single_pass_same_faces``).
    """
    from faceswap_pipeline.weights import load_model, model_entry, register_weights

    model = load_model(cfg.name, weights_dir=cfg.weights_dir)
    va = load_split(cfg.val_pack, 128)  # voting works on the full 128 crops, as in the pipeline
    total = len(va["gender"])
    if n and n < total:
        idx = torch.from_numpy(np.sort(np.random.default_rng(cfg.seed).choice(total, size=n, replace=False)))
        va = {k: v[idx] for k, v in va.items()}
    t = time.time()
    vote = evaluate_split(model, va, voting=True, batch_size=64)  # 4 faces = 180 windows per pass
    vote["seconds"] = round(time.time() - t, 1)
    n_used = len(va["gender"])
    vote["subset"] = f"all {total} val faces" if n_used == total else f"{n_used} of {total} val faces (numpy default_rng({cfg.seed}).choice)"
    single = evaluate_split(model, va, voting=False)
    entry = model_entry(cfg.name, cfg.weights_dir)
    entry["metrics"] = {**entry.get("metrics", {}), "val_voting45": vote, "val_single_pass_same_faces": single}
    register_weights(cfg.name, entry, weights_dir=cfg.weights_dir)
    log.info("voting: gender %.4f race %.4f | single (same faces): gender %.4f race %.4f", vote["gender_acc"], vote["race_acc"], single["gender_acc"], single["race_acc"])
    return vote


if __name__ == "__main__":
    raise SystemExit(main())

"""Distil dlib's 68-point shape predictor into the landmark CNN, then evaluate and export it.

Steps (each resumable; run state in ``--run-dir``, outside the checkout)::

    python -m faceswap_pipeline.train.landmarks label --train-pack P/utk_train.npz --val-pack P/utk_val.npz \
        --images ../shared/data/utkface/train --run-dir ~/faceswap-runs/landmarks
    python -m faceswap_pipeline.train.landmarks train --run-dir ~/faceswap-runs/landmarks --max-minutes 40
    python -m faceswap_pipeline.train.landmarks evaluate --run-dir ~/faceswap-runs/landmarks
    python -m faceswap_pipeline.train.landmarks export --run-dir ~/faceswap-runs/landmarks --weights-dir weights

``label``: dlib's predictor runs on each *source* photo with the face's detector box (the pack
stores it), and its points are mapped into the pack's letterboxed square with the crop's own
:class:`~faceswap_pipeline.types.CropTransform`; the student sees the pack's 128 px grey crop.
``train``: random rotation (+-30 deg, 40 % of faces within +-4.5 deg), scale, shift, flip, brightness/contrast, applied to crop and
points together; loss :func:`~faceswap_pipeline.ops.landmarks.landmark_loss`.
``evaluate``: NME (inter-ocular) vs the teacher on the validation faces as they are, rotated by
+-15 / +-30 deg (crop and teacher points rotated together), and on non-frontal faces.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from faceswap_pipeline.archs.landmarks import FLIP_PERM, LandmarkNet
from faceswap_pipeline.ops.geometry import CHIP_RESCALE
from faceswap_pipeline.ops.landmarks import dlib_landmarks, landmark_loss, nme, yaw_ratio
from faceswap_pipeline.train.checkpoint import atomic_save
from faceswap_pipeline.train.loop import RunClock, StopOnSignal
from faceswap_pipeline.train.packs import atomic_savez

ARCH_KWARGS = {"width": 16, "dense": 512, "dropout": 0.1}
NAME = "landmarks.v1"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ------------------------------------------------------------------------------------------ label


def label_pack(pack_path: str, images_dir: str, out: Path, log_every: int = 2000) -> dict[str, Any]:
    """Teacher labels for one pack: ``out`` .npz with ``grey`` (N, S, S) uint8, ``points`` (N, 68, 2) float32
    (square pixels), ``name`` and ``fallback``."""
    from PIL import Image

    from faceswap_pipeline.ops.geometry import letterbox_transform, rescale_box
    from faceswap_pipeline.train.packs import FacePack

    pack = FacePack(pack_path)
    rescale = pack.meta["framing"]["rescale"]
    n = len(pack)
    grey = np.zeros((n, pack.size, pack.size), np.uint8)
    pts = np.zeros((n, 68, 2), np.float32)
    t0 = time.time()
    for i in range(n):
        name = str(pack.labels["name"][i])
        box = tuple(float(v) for v in pack.labels["box"][i])
        with Image.open(Path(images_dir) / name) as im:
            src = np.asarray(im.convert("RGB"))
        p = dlib_landmarks(src, [box])[0]
        tf = letterbox_transform(rescale_box(box, rescale), pack.size)
        pts[i] = tf.to_square(p)
        grey[i] = np.clip(np.rint(pack.images(i).astype(np.float32) @ LUMA), 0, 255).astype(np.uint8)
        if log_every and (i + 1) % log_every == 0:
            print(f"  {pack_path}: {i + 1}/{n} ({time.time() - t0:.0f} s)", flush=True)
    atomic_savez(out, grey=grey, points=pts, name=pack.labels["name"], fallback=pack.labels["fallback"])
    return {"pack": str(pack_path), "n": n, "seconds": round(time.time() - t0, 1)}


# ------------------------------------------------------------------------------------------ train


def rotate_batch(x: torch.Tensor, pts: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor | None = None,
                 shift: torch.Tensor | None = None, flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp square images and their points together (rotation about the centre, scale, shift, h-flip).

    Args:
        x: ``(B, C, S, S)`` float.
        pts: ``(B, 68, 2)`` square pixels (pixel i covers [i, i+1)).
        angle: ``(B,)`` radians, positive = the face turns clockwise on screen (image y down).
        scale: ``(B,)`` zoom (>1 enlarges the face); shift: ``(B, 2)`` fractions of the side; flip: ``(B,)`` bool.

    Returns:
        ``(warped images, warped points)``; pixels from outside the square are 0.
    """
    b, _, s, _ = x.shape
    scale = torch.ones(b) if scale is None else scale
    shift = torch.zeros(b, 2) if shift is None else shift
    flip = torch.zeros(b, dtype=torch.bool) if flip is None else flip
    c, si = torch.cos(angle), torch.sin(angle)
    # forward map on normalised coords u in [-1, 1]: u' = scale * R(angle) * (f * u) + 2 * shift
    fx = torch.where(flip, -1.0, 1.0)
    fwd = torch.zeros(b, 2, 3)
    fwd[:, 0, 0], fwd[:, 0, 1] = scale * c * fx, -scale * si
    fwd[:, 1, 0], fwd[:, 1, 1] = scale * si * fx, scale * c
    fwd[:, :, 2] = 2 * shift
    full = torch.cat([fwd, torch.tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2]  # affine_grid wants output -> input
    grid = F.affine_grid(inv.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    u = pts / (s / 2.0) - 1.0
    u2 = torch.einsum("bij,bkj->bki", fwd[:, :, :2], u) + fwd[:, None, :, 2]
    p2 = (u2 + 1.0) * (s / 2.0)
    perm = torch.tensor(FLIP_PERM)
    p2 = torch.where(flip[:, None, None], p2[:, perm], p2)
    return out, p2


def _augment(x: torch.Tensor, pts: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b = x.shape[0]
    angle = (torch.rand(b, generator=g) * 2 - 1) * math.radians(30)
    angle = torch.where(torch.rand(b, generator=g) < 0.4, angle * 0.15, angle)  # many faces are near upright
    scale = 0.88 + 0.24 * torch.rand(b, generator=g)
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * 0.06
    flip = torch.rand(b, generator=g) < 0.5
    x, pts = rotate_batch(x, pts, angle, scale, shift, flip)
    gain = 0.7 + 0.6 * torch.rand(b, 1, 1, 1, generator=g)
    bias = (torch.rand(b, 1, 1, 1, generator=g) - 0.5) * 0.2
    return (x * gain + bias).clamp_(0, 1), pts


def train(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    run = Path(a.run_dir).expanduser()
    d = np.load(run / "labels_train.npz")
    grey = torch.from_numpy(d["grey"])
    pts_all = torch.from_numpy(d["points"]).float()
    n, s = grey.shape[0], grey.shape[-1]
    torch.manual_seed(a.seed)
    model = LandmarkNet(**ARCH_KWARGS)
    model.set_mean_shape(pts_all.mean(0) / s)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(a.seed)
    step, spent, hist = 0, 0.0, []
    ck = run / "ckpt.pt"
    if ck.is_file():
        state = torch.load(ck, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["gen"])
        step, spent, hist = state["step"], state["spent"], state["hist"]
        print(f"resumed at step {step} ({spent / 60:.1f} min trained)", flush=True)
    val = np.load(run / "labels_val.npz")
    vx = torch.from_numpy(val["grey"][: a.val_n]).float().div_(255)[:, None]
    vp = val["points"][: a.val_n]
    clock, last_ck, run_loss = RunClock(wall_s=spent), time.perf_counter(), []
    budget_s = a.max_minutes * 60
    model.train()
    with StopOnSignal() as stop:
        while step < a.steps and clock.wall_s() < budget_s and not stop:
            # cosine decay over whichever budget runs out first (steps or minutes), so a time-capped run still anneals
            progress = min(1.0, max(step / a.steps, clock.wall_s() / budget_s))
            lr = a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))
            for grp in opt.param_groups:
                grp["lr"] = lr
            idx = torch.randint(0, n, (a.batch_size,), generator=g)
            x = grey[idx].float().div_(255)[:, None]
            x, p = _augment(x, pts_all[idx], g)
            loss = landmark_loss(model(x), p / s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_loss.append(float(loss))
            if step % a.log_every == 0:
                print(f"step {step} loss {np.mean(run_loss):.4f} lr {lr:.2e} {clock.wall_s():.0f} s", flush=True)
                run_loss = []
            done = step >= a.steps or clock.wall_s() >= budget_s or bool(stop)  # a signal: evaluate, checkpoint, stop
            if step % a.eval_every == 0 or done:
                model.eval()
                with torch.no_grad():
                    pv = torch.cat([model(vx[i : i + 256]) for i in range(0, len(vx), 256)]).numpy() * s
                model.train()
                e = float(nme(pv, vp).mean())
                hist.append({"step": step, "val_nme": round(e, 4), "train_s": round(clock.wall_s(), 1)})
                print(f"  val NME {e:.4f} ({len(vp)} faces)", flush=True)
            if time.perf_counter() - last_ck > a.ckpt_seconds or done or step % a.eval_every == 0:
                atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": g.get_state(), "step": step,
                             "spent": clock.wall_s(), "hist": hist, "config": vars(a), "arch_kwargs": ARCH_KWARGS}, ck)
                last_ck = time.perf_counter()
    print(f"stopped at step {step}", flush=True)


# ------------------------------------------------------------------------------------------ evaluate


def _load(run: Path) -> tuple[LandmarkNet, dict[str, Any]]:
    state = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=False)
    model = LandmarkNet(**state["arch_kwargs"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """``(N, 68, 2)`` square pixels for ``(N, 1, S, S)`` float crops."""
    s = x.shape[-1]
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy() * s


def evaluate(run: Path, model: torch.nn.Module | None = None, fp16: bool = True) -> dict[str, Any]:
    """NME of the student vs the teacher on the validation faces (see the module docstring)."""
    if model is None:
        model, _ = _load(run)
    if fp16:  # measure what ships: weights rounded through fp16
        from faceswap_pipeline.weights import dequantize_state_dict, quantize_state_dict

        m2 = LandmarkNet(**ARCH_KWARGS)
        m2.load_state_dict(dequantize_state_dict(quantize_state_dict(model.state_dict(), "fp16")))
        model = m2.eval()
    val = np.load(run / "labels_val.npz")
    keep = ~val["fallback"]  # the teacher needs a real detector box
    x = torch.from_numpy(val["grey"][keep]).float().div_(255)[:, None]
    t = torch.from_numpy(val["points"][keep]).float()
    res: dict[str, Any] = {"n": int(keep.sum()), "teacher": "dlib shape_predictor_68_face_landmarks (on the source photo, HOG box)",
                           "normaliser": "outer eye corners (36-45), teacher's"}

    def summ(e: np.ndarray) -> dict[str, float]:
        return {"mean": round(float(e.mean()), 4), "median": round(float(np.median(e)), 4),
                "p90": round(float(np.percentile(e, 90)), 4), "fail_0.10": round(float((e > 0.10).mean()), 4)}

    res["as_is"] = summ(nme(predict(model, x), t.numpy()))
    for deg in (-30, -15, 15, 30):
        ang = torch.full((len(x),), math.radians(deg))
        xr, tr = rotate_batch(x, t, ang)
        res[f"rotated_{deg:+d}"] = summ(nme(predict(model, xr), tr.numpy()))
    yr = yaw_ratio(t.numpy())
    nf = np.abs(yr - 0.5) > 0.12
    res["non_frontal"] = {**summ(nme(predict(model, x[nf]), t[nf].numpy())), "n": int(nf.sum()),
                          "rule": "|nose-tip position between the jaw ends - 0.5| > 0.12 (teacher points)"}
    xf = torch.from_numpy(val["grey"][keep][~nf]).float().div_(255)[:, None]
    res["frontal"] = {**summ(nme(predict(model, xf), t[~nf].numpy())), "n": int((~nf).sum())}
    ms = t.mean(0, keepdim=True).expand_as(t).numpy()
    res["baseline_mean_shape"] = summ(nme(ms, t.numpy()))
    return res


def export(a: argparse.Namespace) -> None:
    """Evaluate the run's checkpoint, write ``landmarks_v1.safetensors`` (fp16) and its manifest entry."""
    from faceswap_pipeline.train.export import export_model

    run = Path(a.run_dir).expanduser()
    model, state = _load(run)
    metrics = evaluate(run, model)
    cfg = state["config"]
    export_model(
        model, NAME, a.weights_dir, file="landmarks_v1.safetensors", arch="landmark_cnn", kwargs=state["arch_kwargs"], storage="fp16",
        io={"range": [0, 1], "size": 128, "layout": "B1HW grey (or B3HW RGB: luma inside)",
            "outputs": "(B, 68, 2) x, y as fractions of the square side, dlib / iBUG 300-W order"},
        framing={"detector": "hog", "rescale": list(CHIP_RESCALE), "size": 128, "upsample": 1},
        training={
            "command": (f"python -m faceswap_pipeline.train.landmarks train --run-dir {cfg['run_dir']} --steps {cfg['steps']} "
                        f"--batch-size {cfg['batch_size']} --lr {cfg['lr']} --threads {cfg['threads']} --max-minutes {cfg['max_minutes']}"),
            "data": "utk_train.npz (UTKFace train/, prepare packs), teacher labels by dlib's 68-point predictor",
            "split": "faceswap_pipeline.train.splits.is_validation (sha1 of file name, 10%)",
            "steps": state["step"], "batch_size": cfg["batch_size"], "wall_time_s": round(state["spent"], 1),
            "machine": a.machine, "seed": cfg["seed"],
        },
        metrics={"val_nme_vs_teacher": metrics, "history": state["hist"]},
    )
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faceswap_pipeline.train.landmarks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("label", help="dlib teacher labels for the train and validation packs")
    q.add_argument("--train-pack", required=True)
    q.add_argument("--val-pack", required=True)
    q.add_argument("--images", required=True, help="folder of the packs' source photos (UTKFace train/)")
    q.add_argument("--run-dir", required=True)
    q = sub.add_parser("train", help="distil (resumes from RUN_DIR/ckpt.pt)")
    q.add_argument("--run-dir", required=True)
    q.add_argument("--steps", type=int, default=20000)
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--threads", type=int, default=1)
    q.add_argument("--max-minutes", type=float, default=60.0)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--log-every", type=int, default=50)
    q.add_argument("--eval-every", type=int, default=500)
    q.add_argument("--val-n", type=int, default=512)
    q.add_argument("--ckpt-seconds", type=float, default=120.0)
    q = sub.add_parser("evaluate")
    q.add_argument("--run-dir", required=True)
    q = sub.add_parser("export", help="evaluate, write weights/landmarks_v1.safetensors and its manifest entry")
    q.add_argument("--run-dir", required=True)
    q.add_argument("--weights-dir", default="weights")
    q.add_argument("--machine", default="2-core AMD EPYC CPU, no GPU, 1 torch thread (shared with other jobs)")
    a = p.parse_args(argv)
    run = Path(a.run_dir).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    if a.cmd == "label":
        torch.set_num_threads(1)
        for split, pk in (("val", a.val_pack), ("train", a.train_pack)):
            out = run / f"labels_{split}.npz"
            if out.is_file():
                print(f"{out} exists, skipped", flush=True)
                continue
            print(json.dumps(label_pack(pk, a.images, out)), flush=True)
    elif a.cmd == "train":
        train(a)
    elif a.cmd == "evaluate":
        torch.set_num_threads(1)
        print(json.dumps(evaluate(run), indent=2))
    else:
        torch.set_num_threads(1)
        export(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

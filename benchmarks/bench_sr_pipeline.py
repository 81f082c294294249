"""Benchmark the SR stage on what it is really fed: CycleGAN outputs of held-out faces.

For the first ``--n`` held-out faces of a validation face pack (128 px crops in the generators'
framing, ``pad <= 0.02``, half male, half female) the shipped generator of each face's gender
(male2female / female2male) makes the 128 px output the SR stage receives. Every model in
``--models`` upscales it (as :class:`~faceswap_pipeline.stages.upscale.SRUpscaler` runs it:
bf16 autocast "auto", clamped, 8-bit), and so does bicubic (Keys a = -0.5, antialiased: what
``--upscaler resize`` amounts to) at the same factor. Scored, per model:

* ``sharpness``: median variance of the luma Laplacian (no reference; higher = sharper, but a
  dot grid raises it too, so read it with the grid figures),
* ``grid``: median :func:`~faceswap_pipeline.ops.spectral.grid_ratio` at the 2- and 4-px periods
  (the sub-pixel convolutions' own) and at ``2 * scale`` px (the generator's 2-px checkerboard,
  upscaled), each also relative to bicubic's (target: <= 1.10), and the judge module's Nyquist
  share :func:`~faceswap_pipeline.train.judge.grid_energy`,
* ``attr_target_rate``: the attribute network's target-gender rate on the SR outputs, and
  ``judge_target_rate``: the independent dlib-descriptor judge's on them (shrunk back to 128 px,
  the judge's framing); SR must not undo the swap,
* ``psnr``: the classic clean-LR PSNR-Y / SSIM-Y against both bicubic kernels (``bench_sr.quality``)
  on the first ``--n-psnr`` UTKFace validation chips (200 px HR),
* ``speed``: faces/s for 128 px faces at batch 1 and 4, fp32 / bf16 autocast / bf16 +
  channels_last, beside the generator's own time for one face (fp32, as the pipeline runs it on
  a CPU), all in this one run,
* ``figure`` (``--figure``): a before/after picture made from ``skimage.data.astronaut()`` only,
* ``folder``: images/s of the whole pipeline (``load_pipeline``) on 640x480 photos with one
  ~180 px face (made from ``skimage.data.astronaut()``), ``--upscaler srresnet`` vs ``resize``,
  interleaved rounds.

Models are ``label=name`` or ``label=name@folder`` (a manifest name in a weights folder) or
``label=path/to/last.pt`` (a training checkpoint).

Example::

    PYTHONPATH=. python benchmarks/bench_sr_pipeline.py --pack ~/faceswap-runs/packs/utk_val.npz \\
        --faces ../shared/data/utkface/train --models x4_v1=srresnet.x4@~/faceswap-runs/sr-v1 \\
        x4=srresnet.x4 x2=srresnet.x2 --pipeline-weights weights --json benchmarks/results/sr_pipeline.json
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import quality, write_json

log = logging.getLogger("bench_sr_pipeline")


def load_sr(spec: str) -> torch.nn.Module:
    """A model from ``name``, ``name@folder`` or a checkpoint path (see the module docstring)."""
    from faceswap_pipeline.archs.srresnet import SRResNet
    from faceswap_pipeline.weights import load_model

    path = Path(os.path.expanduser(spec))
    if path.suffix == ".pt" and path.is_file():
        ck = torch.load(path, map_location="cpu", weights_only=False)
        m = SRResNet(**ck["kwargs"])
        m.load_state_dict(ck["state_dict"])
        return m.eval()
    name, _, folder = spec.partition("@")
    return load_model(name, weights_dir=os.path.expanduser(folder) if folder else None).eval()


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def generator_outputs(pack_path: str, n: int, weights_dir: str | None) -> dict[str, Any]:
    """Held-out faces (half male, half female) and the shipped generators' outputs for them."""
    from faceswap_pipeline.stages.translate import translate
    from faceswap_pipeline.train.packs import FacePack
    from faceswap_pipeline.weights import load_model

    pack = FacePack(pack_path)
    ok = pack.labels["pad"] <= 0.02
    idx = np.concatenate([np.flatnonzero(ok & (pack.labels["gender"] == g))[: n // 2] for g in (0, 1)])
    faces = torch.from_numpy(pack.images(idx)).permute(0, 3, 1, 2).float().div_(255.0)
    gender = pack.labels["gender"][idx].astype(int)
    outs = torch.empty_like(faces)
    gens = {0: load_model("cyclegan.male2female", weights_dir=weights_dir), 1: load_model("cyclegan.female2male", weights_dir=weights_dir)}
    with torch.inference_mode():
        for g, gen in gens.items():
            sel = np.flatnonzero(gender == g)
            for i in range(0, len(sel), 8):
                j = sel[i : i + 8]
                outs[j] = translate(gen.eval(), faces[j])
    outs = torch.round(outs * 255) / 255  # what the next stage gets is float, but equal to an 8-bit image here
    return {"faces": faces, "outputs": outs, "gender": gender, "names": [str(s) for s in pack.labels["name"][idx]],
            "generators": gens}


def upscale_all(fn, x: torch.Tensor, batch: int = 4) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def score_outputs(y: torch.Tensor, bic: torch.Tensor | None, scale: int, gender: np.ndarray, attr, judge) -> dict[str, Any]:
    """The no-reference figures of one set of upscaled generator outputs."""
    from faceswap_pipeline.ops.geometry import resize
    from faceswap_pipeline.ops.spectral import grid_ratio, sharpness
    from faceswap_pipeline.train.evaluate import target_rate
    from faceswap_pipeline.train.judge import grid_energy

    u8 = _u8(y)
    periods = sorted({2, 4, 2 * scale}) if scale > 1 else [2]
    r: dict[str, Any] = {"n": len(u8), "out_px": int(y.shape[-1]), "sharpness_median": round(float(np.median(sharpness(u8))), 2)}
    for p in periods:
        g = grid_ratio(u8, p)
        r[f"grid_ratio_{p}px_median"] = round(float(np.median(g)), 4)
        if bic is not None:
            gb = grid_ratio(_u8(bic), p)
            r[f"grid_ratio_{p}px_vs_bicubic"] = round(float(np.median(g) / np.median(gb)), 4)
    r["grid_energy_nyquist_mean"] = round(float(grid_energy(u8).mean()), 6)
    if attr is not None:
        for g, dst in ((0, "female"), (1, "male")):
            sel = gender == g
            r[f"attr_target_rate_{'male2female' if g == 0 else 'female2male'}"] = round(
                target_rate(attr, torch.from_numpy(u8[sel]).permute(0, 3, 1, 2).float().div(255), dst, voting=False), 4)
    if judge is not None:
        small = _u8(resize(y.float(), (128, 128), "bicubic")) if y.shape[-1] != 128 else u8
        from faceswap_pipeline.train.judge import describe

        desc, _, _ = describe(small, judge.rescale)
        for g, direction in ((0, "male2female"), (1, "female2male")):
            r[f"judge_target_rate_{direction}"] = round(float(judge.hits(desc[gender == g], direction).mean()), 4)
    return r


def _time(fn, runs: int) -> dict[str, Any]:
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    return {"s_median": round(statistics.median(ts), 4), "s_iqr": [round(q[0], 4), round(q[2], 4)], "runs": runs}


def speed(models: dict[str, torch.nn.Module], generator: torch.nn.Module, runs: int, batches: tuple[int, ...]) -> dict[str, Any]:
    """faces/s of every model and of the generator on 128 px faces, side by side."""
    from faceswap_pipeline.stages.translate import translate
    from faceswap_pipeline.stages.upscale import _run

    out: dict[str, Any] = {}
    x_all = torch.rand(max(batches), 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for b in batches:
            x = x_all[:b]
            for prec, bf16 in (("fp32", False), ("bf16", True)):
                def gen_once(x=x, bf16=bf16) -> torch.Tensor:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        return translate(generator, x)

                t = _time(gen_once, runs)
                out[f"generator_b{b}_{prec}"] = {**t, "ms_per_face": round(1000 * t["s_median"] / b, 1)}
            for label, m in models.items():
                for prec, bf16, cl in (("fp32", False, False), ("bf16", True, False), ("bf16_cl", True, True)):
                    if cl:
                        m.to(memory_format=torch.channels_last)
                    t = _time(lambda m=m, x=x, bf16=bf16, cl=cl: _run(m, x, bf16, cl), runs)
                    if cl:
                        m.to(memory_format=torch.contiguous_format)
                    out[f"{label}_b{b}_{prec}"] = {**t, "ms_per_face": round(1000 * t["s_median"] / b, 1),
                                                   "faces_per_s": round(b / t["s_median"], 3)}
                    log.info("speed %s b%d %s: %.1f ms/face", label, b, prec, 1000 * t["s_median"] / b)
    return out


def _bf16(fn):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn()


def folder_speed(weights_dir: str | None, n_images: int, rounds: int) -> dict[str, Any]:
    """images/s of the whole pipeline on 640x480 photos with one ~180 px face: srresnet vs resize."""
    from skimage.data import astronaut

    from faceswap_pipeline.api import load_pipeline
    from faceswap_pipeline.ops.geometry import resize

    img = torch.from_numpy(astronaut()).permute(2, 0, 1)[None].float() / 255
    big = resize(img, (742, 742), "bicubic")  # the HOG box (91 px at 512) becomes ~132 px: a ~180 px crop window
    photo = (big[0, :, 60:540, 100:740].permute(1, 2, 0) * 255).round().byte().numpy()
    photos = [np.ascontiguousarray(np.roll(photo, 3 * i, axis=1)) for i in range(n_images)]  # not bit-identical
    pipes = {u: load_pipeline("male2female", upscaler=u, device="cpu", weights_dir=weights_dir) for u in ("srresnet", "resize")}
    rates: dict[str, list[float]] = {u: [] for u in pipes}
    actions: dict[str, list[str]] = {}
    paste = []
    for u, pipe in pipes.items():  # warm-up, and what was done to the faces
        _, faces = pipe(photos[0])
        actions[u] = [a for f in faces for a in f.actions]
        paste = [max(f.transform.crop_size) for f in faces if f.transform is not None]
    for _ in range(rounds):
        for u, pipe in pipes.items():
            t = time.perf_counter()
            for p in photos:
                pipe(p)
            rates[u].append(len(photos) / (time.perf_counter() - t))
    res = {u: {"images_per_s_median": round(statistics.median(v), 3), "images_per_s_runs": [round(x, 3) for x in v]}
           for u, v in rates.items()}
    res["srresnet_vs_resize"] = round(res["srresnet"]["images_per_s_median"] / res["resize"]["images_per_s_median"], 3)
    res["photo"] = f"640x480 crop of skimage astronaut resized to 742 px; face pasted at {paste} px"
    res["face_actions"] = actions
    res["n_images"], res["rounds"] = len(photos), rounds
    return res


ASTRONAUT_FACE = (175.0, 76.0, 266.0, 167.0)
"""dlib HOG's box (upsample 1) for the face in ``skimage.data.astronaut()`` (as in tests/conftest.py)."""


def figure(models: dict[str, torch.nn.Module], path: str, weights_dir: str | None, zoom_box=(60, 120, 140, 200)) -> None:
    """Before/after picture from ``skimage.data.astronaut()`` only: generator output, bicubic, each SR model.

    Top row: the 128 px male2female output brought to 256 px (nearest, bicubic, then each model,
    x4 models resized down to 256 as the pipeline does for a 129-256 px face); bottom row: the
    ``zoom_box`` (x0, y0, x1, y1 of the 256 px image) of each, enlarged 3x with nearest neighbour.
    """
    from PIL import Image, ImageDraw
    from skimage.data import astronaut

    from faceswap_pipeline.api import model_framing
    from faceswap_pipeline.ops.geometry import crop_letterbox, rescale_box, resize
    from faceswap_pipeline.stages.translate import translate
    from faceswap_pipeline.stages.upscale import _run, resolve_bf16
    from faceswap_pipeline.weights import load_model

    rescale, size = model_framing(["male2female"], weights_dir)
    crop, _ = crop_letterbox(astronaut(), rescale_box(ASTRONAUT_FACE, rescale), size)
    with torch.inference_mode():
        g = translate(load_model("cyclegan.male2female", weights_dir=weights_dir).eval(), crop[None])
        g = torch.round(g * 255) / 255
        panels = {"generator (nearest)": torch.nn.functional.interpolate(g, scale_factor=2, mode="nearest"),
                  "bicubic": resize(g, (256, 256), "bicubic")}
        for label, m in models.items():
            y = _run(m, g, resolve_bf16("auto", "cpu"))
            panels[label] = resize(y, (256, 256), "bicubic") if y.shape[-1] != 256 else y
    x0, y0, x1, y1 = zoom_box
    w, zw = 256, 3 * (x1 - x0)
    sheet = Image.new("RGB", (len(panels) * max(w, zw), 16 + w + zw), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, t) in enumerate(panels.items()):
        u8 = _u8(t)[0]
        ox = i * max(w, zw)
        sheet.paste(Image.fromarray(u8), (ox, 16))
        draw.rectangle([ox + x0, 16 + y0, ox + x1, 16 + y1], outline=(255, 0, 0))
        sheet.paste(Image.fromarray(u8[y0:y1, x0:x1]).resize((zw, zw), Image.NEAREST), (ox, 16 + w))
        draw.text((ox + 4, 2), label, fill=(0, 0, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", required=True, help="validation face pack (.npz) whose faces go through the generators")
    p.add_argument("--n", type=int, default=48, help="faces (half male, half female)")
    p.add_argument("--faces", default=None, help="UTKFace folder for the clean-LR PSNR (its validation split)")
    p.add_argument("--n-psnr", type=int, default=100)
    p.add_argument("--models", nargs="+", required=True, help="label=name[@folder] or label=ckpt.pt")
    p.add_argument("--weights-dir", default=None, help="folder of the generators / attribute net / judge (default: shipped)")
    p.add_argument("--no-judge", action="store_true", help="skip the dlib judge")
    p.add_argument("--speed-runs", type=int, default=3)
    p.add_argument("--speed-batches", default="1,4")
    p.add_argument("--pipeline-weights", default=None, help="weights folder whose srresnet.x2/x4 the folder-speed test uses")
    p.add_argument("--folder-images", type=int, default=6)
    p.add_argument("--folder-rounds", type=int, default=3)
    p.add_argument("--skip", default="", help="comma list of sections to skip: quality,psnr,speed,folder")
    p.add_argument("--figure", default=None, help="write the before/after picture (skimage astronaut) here")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    skip = set(filter(None, a.skip.split(",")))

    from faceswap_pipeline.machine import describe_machine, native_bf16
    from faceswap_pipeline.ops.geometry import resize
    from faceswap_pipeline.stages.upscale import _run, resolve_bf16
    from faceswap_pipeline.weights import load_model

    models = {}
    for spec in a.models:
        label, _, src = spec.partition("=")
        models[label] = load_sr(src)
    bf16 = resolve_bf16("auto", "cpu")
    res: dict[str, Any] = {
        "machine": describe_machine("cpu"), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16(), "stage_precision": "bf16 autocast" if bf16 else "fp32",
        "models": {k: {"src": s.partition("=")[2], "scale": int(m.scale)} for (k, m), s in zip(models.items(), a.models)},
    }
    if a.figure:
        figure(models, a.figure, a.weights_dir)
    data = generator_outputs(a.pack, a.n, a.weights_dir)
    res["set"] = (f"{len(data['gender'])} faces of {Path(a.pack).name} (pad <= 0.02; {int((data['gender'] == 0).sum())} male, "
                  f"{int((data['gender'] == 1).sum())} female) through the shipped generators")
    if "quality" not in skip:
        attr = load_model("attributes.v1", weights_dir=a.weights_dir)
        judge = None
        if not a.no_judge:
            try:
                from faceswap_pipeline.train.judge import Judge

                judge = Judge(weights_dir=a.weights_dir)
            except Exception as e:  # noqa: BLE001 - a missing or re-fitting judge must not stop the benchmark
                log.warning("no judge: %s", e)
                res["judge_error"] = str(e)
        q: dict[str, Any] = {}
        t = time.perf_counter()
        q["real_faces_128"] = score_outputs(data["faces"], None, 1, data["gender"], attr, judge)
        q["generator_128"] = score_outputs(data["outputs"], None, 1, data["gender"], attr, judge)
        bics = {}
        for k in sorted({int(m.scale) for m in models.values()}):
            bics[k] = resize(data["outputs"], (128 * k, 128 * k), "bicubic")
            q[f"bicubic_x{k}"] = score_outputs(bics[k], bics[k], k, data["gender"], attr, judge)
        for label, m in models.items():
            y = upscale_all(lambda x, m=m: _run(m, x, bf16), data["outputs"])
            q[label] = score_outputs(y, bics[int(m.scale)], int(m.scale), data["gender"], attr, judge)
            log.info("%s: %s", label, q[label])
        res["generator_outputs"] = q
        log.info("quality on generator outputs: %.0f s", time.perf_counter() - t)
    if a.faces and "psnr" not in skip:
        from faceswap_pipeline.train.srresnet import read_rgb, split_faces

        _, val = split_faces(a.faces)
        imgs = [read_rgb(f) for f in val[: a.n_psnr]]
        res["psnr_clean"] = {"set": f"UTKFace validation split, first {len(imgs)} by name, 200 px HR", "precision": res["stage_precision"]}
        for label, m in models.items():
            fn = (lambda x, m=m: _bf16(lambda: m(x))) if bf16 else m
            fn.scale = m.scale  # type: ignore[attr-defined]
            res["psnr_clean"][label] = quality(fn, imgs, int(m.scale), torch.device("cpu"))
            log.info("psnr %s: %s", label, res["psnr_clean"][label])
    if "speed" not in skip:
        res["speed"] = speed(models, data["generators"][0].eval(), a.speed_runs, tuple(int(b) for b in a.speed_batches.split(",")))
        g1 = res["speed"].get("generator_b1_fp32", {}).get("ms_per_face")
        for label in models:
            key = f"{label}_b1_{'bf16_cl' if bf16 else 'fp32'}"  # as the stage runs it (channels_last by default)
            if g1 and key in res["speed"]:
                res["speed"][f"{label}_vs_generator_b1"] = round(res["speed"][key]["ms_per_face"] / g1, 3)
    if "folder" not in skip:
        res["folder"] = folder_speed(a.pipeline_weights, a.folder_images, a.folder_rounds)
        log.info("folder: %s", res["folder"])
    print(write_json(res, a.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())

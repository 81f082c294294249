"""Seam metrics of the paste-back modes: square feather vs ellipse vs face-shaped masks,
alpha feather vs multi-band vs Poisson.

Two photo sets, each run through the real pipeline (HOG + verifier, crop, landmark CNN, generator
``auto-gender``, bicubic paste-back size) once; every blend configuration then pastes the same
generator outputs:

* ``scenes``: photos scikit-image ships: the astronaut as is, rotated and in grey, and synthetic
  composites of her head (soft-alpha'd, scaled, rotated) into other ``skimage.data`` scenes, some
  near the border. These are also the comparison sheet (``--sheet``; publishable images only).
* ``fddb``: real multi-face news photos (``--fddb``, FDDB dev images with >= 2 detected faces);
  numbers only, no image of them is written.

Per face: :func:`faceswap_pipeline.ops.seam.seam_score` along its own mask's boundary (excess
Delta-E / gradient over the original photo at the same pixels); per set: boundary-weighted means
and on how many faces the default (face mask + Poisson) beats the square feather.

    python benchmarks/bench_blend.py --fddb ../shared/data/fddb_dev/images --json benchmarks/results/blend.json \\
        --md docs/benchmarks/blend.md --sheet docs/blend_comparison.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceswap_pipeline.machine import describe_machine  # noqa: E402
from faceswap_pipeline.ops.masks import paste_mask  # noqa: E402
from faceswap_pipeline.ops.seam import mean_scores, seam_score  # noqa: E402
from faceswap_pipeline.stages.blend import FeatherBlend  # noqa: E402
from faceswap_pipeline.types import ImageRecord  # noqa: E402

CONFIGS = (
    ("rect", "feather", "square feather (seed)"),
    ("ellipse", "feather", "ellipse feather (previous default)"),
    ("landmarks", "feather", "face mask + feather (previous default)"),
    ("landmarks", "laplacian", "face mask + multi-band"),
    ("landmarks", "poisson", "face mask + Poisson (default)"),
    ("head", "poisson", "head mask + Poisson"),
    ("rect", "poisson", "square + Poisson"),
)
BASE, NEW = "rect/feather", "landmarks/poisson"


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]


def scene_photos() -> list[tuple[str, np.ndarray]]:
    """The astronaut, and composites of her head into other skimage.data scenes (deterministic)."""
    import cv2
    import skimage.data as sd

    ast = sd.astronaut()
    out = [("astronaut", ast)]
    h, w = ast.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0)
    out.append(("astronaut_rot15", cv2.warpAffine(ast, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)))
    g = (ast.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    out.append(("astronaut_grey", _rgb(g)))
    head = ast[10:260, 110:340].astype(np.float32)  # her head and some background
    hh, hw = head.shape[:2]
    yy, xx = np.mgrid[:hh, :hw]
    r = np.sqrt(((xx - hw / 2) / (hw / 2)) ** 2 + ((yy - hh / 2) / (hh / 2)) ** 2)
    a = np.clip((1.0 - r) / 0.35, 0, 1)[..., None]  # a very soft composite: no seam of its own
    comps = [("coffee", sd.coffee(), 0.9, 0, (60, 150)), ("chelsea", sd.chelsea(), 0.8, -10, (10, 200)),
             ("rocket", sd.rocket(), 0.7, 8, (-20, 250)), ("camera", _rgb(sd.camera()), 1.0, 0, (120, 330)),
             ("brick", _rgb(sd.brick()), 0.9, 20, (150, 80)), ("grass", _rgb(sd.grass()), 1.1, -5, (300, 220))]
    for name, scene, scale, rot, (oy, ox) in comps:
        scene = scene.copy()
        M = cv2.getRotationMatrix2D((hw / 2, hh / 2), rot, scale)
        sz = (int(hw * 1.2), int(hh * 1.2))
        M[:, 2] += ((sz[0] - hw) / 2, (sz[1] - hh) / 2)
        hd = cv2.warpAffine(head, M, sz, flags=cv2.INTER_LINEAR)
        al = cv2.warpAffine(a, M, sz, flags=cv2.INTER_LINEAR)[..., None]
        H, W = scene.shape[:2]
        y0, x0 = max(oy, 0), max(ox, 0)
        y1, x1 = min(oy + sz[1], H), min(ox + sz[0], W)
        part = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
        reg = scene[y0:y1, x0:x1].astype(np.float32)
        scene[y0:y1, x0:x1] = np.clip(np.rint(al[part] * hd[part] + (1 - al[part]) * reg), 0, 255).astype(np.uint8)
        out.append((f"astronaut_in_{name}", scene))
    return out


def fddb_photos(folder: Path, n: int, detector) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    out = []
    for p in sorted(folder.glob("*.jpg")):
        with Image.open(p) as im:
            img = np.asarray(im.convert("RGB"))
        if len(detector(img)) >= 2:
            out.append((p.name, img))
        if len(out) >= n:
            break
    return out


def build(device: str = "cpu"):
    import faceswap_pipeline as fp

    pipe = fp.load_pipeline("auto-gender", upscaler="resize", device=device)
    return [s for s in pipe.stages if s.name != "blend"]


def run_set(name: str, photos: list[tuple[str, np.ndarray]], stages, keep: bool = False) -> dict:
    per: dict[str, list] = {f"{m}/{b}": [] for m, b, _ in CONFIGS}
    wins = {"delta_e": 0, "gradient": 0, "both": 0}
    faces_n, t_blend = 0, {k: 0.0 for k in per}
    kept = []
    for pname, img in photos:
        rec = [ImageRecord(image=img, key=pname)]
        for s in stages:
            rec = s(rec)
        r = rec[0]
        faces = [f for f in r.faces if f.output is not None]
        if not faces:
            continue
        results = {}
        for shape, mode, _ in CONFIGS:
            key = f"{shape}/{mode}"
            t0 = time.perf_counter()
            FeatherBlend(0.12, shape, mode)([r])
            t_blend[key] += time.perf_counter() - t0
            results[key] = r.result
            for f in faces:
                alpha = np.zeros(img.shape[:2], np.float32)
                tf = f.transform
                x0, y0, x1, y1 = tf.box
                m = paste_mask(tf.box, img.shape[:2], 0.12, shape, f.detection.landmarks)
                H, W = img.shape[:2]
                sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
                alpha[sy0:sy1, sx0:sx1] = m[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
                sc = seam_score(img, r.result, alpha)
                per[key].append(sc)
        for i in range(len(faces)):
            b, n = per[BASE][-len(faces) + i], per[NEW][-len(faces) + i]
            if b is None or n is None:
                continue
            de, gr = n.delta_e_excess < b.delta_e_excess, n.gradient_excess < b.gradient_excess
            wins["delta_e"] += de
            wins["gradient"] += gr
            wins["both"] += de and gr
        faces_n += len(faces)
        if keep:
            kept.append((pname, img, results, faces))
    summary = {k: {**mean_scores([s for s in v if s is not None]), "blend_ms_per_photo": round(1000 * t_blend[k] / max(len(photos), 1), 1)}
               for k, v in per.items()}
    return {"set": name, "photos": len(photos), "faces": faces_n, "configs": summary,
            f"{NEW}_beats_{BASE}_per_face": {**wins, "of": faces_n}}, kept


def sheet(kept, path: Path, rows: int = 4) -> None:
    """Before/after crops around each face: original, then one column per configuration."""
    from PIL import Image, ImageDraw

    cell = 200
    labels = ["original"] + [lab for _, _, lab in CONFIGS]
    pick = [k for k in kept if k[0] in ("astronaut", "astronaut_in_coffee", "astronaut_in_brick", "astronaut_grey", "astronaut_in_rocket")][:rows]
    canvas = Image.new("RGB", (cell * len(labels), 24 + cell * len(pick)), "white")
    d = ImageDraw.Draw(canvas)
    for j, lab in enumerate(labels):
        d.text((j * cell + 4, 6), lab.replace(" (", "\n("), fill="black")
    for i, (_, img, results, faces) in enumerate(pick):
        tf = faces[0].transform
        x0, y0, x1, y1 = tf.box
        cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
        box = (int(cx - s), int(cy - s), int(cx + s), int(cy + s))
        ims = [img] + [results[f"{m}/{b}"] for m, b, _ in CONFIGS]
        for j, im in enumerate(ims):
            tile = Image.fromarray(im).crop(box).resize((cell, cell), Image.LANCZOS)
            canvas.paste(tile, (j * cell, 24 + i * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)


def write_md(res: dict, path: Path) -> None:
    lines = ["# Paste-back seams", "",
             f"Machine: {res['machine']}. Command: `{res['command']}`.", "",
             "Seam metrics along each face's own mask boundary (0.5 level line), as the excess of the result over the",
             "original photo at the same pixels (lower is better, 0 = no seam added): **dE** = CIEDE2000 between the mean",
             f"Lab colour just inside and just outside the boundary ({res['ring']} px bands), **grad** = mean Sobel",
             "gradient of Lab lightness within the bands. Generator: auto-gender (the shipped preview models),",
             "bicubic paste-back size; landmarks: the shipped landmark CNN.", ""]
    for s in res["sets"]:
        lines += [f"## {s['set']}: {s['photos']} photos, {s['faces']} faces", "",
                  "| blend | dE excess | grad excess | dE (result / original) | grad (result / original) | ms / photo |",
                  "|---|---|---|---|---|---|"]
        for (shape, mode, lab) in CONFIGS:
            c = s["configs"][f"{shape}/{mode}"]
            if not c.get("faces"):
                continue
            lines.append(f"| {lab} | {c['delta_e_excess']:.3f} | {c['gradient_excess']:.3f} | {c['delta_e']:.2f} / {c['delta_e_original']:.2f} "
                         f"| {c['gradient']:.2f} / {c['gradient_original']:.2f} | {c['blend_ms_per_photo']} |")
        w = s[f"{NEW}_beats_{BASE}_per_face"]
        lines += ["", f"Face mask + Poisson (the default) beats the square feather on {w['delta_e']}/{w['of']} faces in dE, "
                  f"{w['gradient']}/{w['of']} in grad, {w['both']}/{w['of']} in both.", ""]
    lines += ["Comparison sheet (skimage.data photos and composites of them only): [docs/blend_comparison.png](../blend_comparison.png).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fddb", type=Path, default=None, help="folder of FDDB dev images (multi-face set)")
    p.add_argument("--n-fddb", type=int, default=30)
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/blend.json"))
    p.add_argument("--md", type=Path, default=None)
    p.add_argument("--sheet", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    stages = build()
    t0 = time.time()
    sets = []
    res_scenes, kept = run_set("scenes (skimage.data photos and composites)", scene_photos(), stages, keep=a.sheet is not None)
    sets.append(res_scenes)
    print(json.dumps(res_scenes, indent=1), flush=True)
    if a.fddb is not None:
        photos = fddb_photos(a.fddb, a.n_fddb, stages[0])
        r, _ = run_set("fddb (real multi-face photos)", photos, stages)
        sets.append(r)
        print(json.dumps(r, indent=1), flush=True)
    cmd = "python benchmarks/bench_blend.py" + (" --fddb FDDB_DEV/images" if a.fddb else "") + (f" --n-fddb {a.n_fddb}" if a.fddb else "")
    res = {"machine": describe_machine("cpu"), "command": cmd, "ring": 4, "wall_s": round(time.time() - t0, 1), "sets": sets}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1) + "\n")
    if a.md:
        write_md(res, a.md)
    if a.sheet:
        sheet(kept, a.sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

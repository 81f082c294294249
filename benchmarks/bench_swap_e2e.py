"""End-to-end swap rate: held-out faces pasted into scene photos, the whole pipeline, the independent judge.

For each of ``--n`` held-out validation adults of the source domain (gender or race) (UTKFace chips named by the
validation pack), the original 200x200 chip is resized to a random side in ``--min-size`` ..
``--max-size`` px and pasted at a random place into a scene photo (``--scenes``, cycling). The
pipeline (``faceswap_pipeline.load_pipeline``: HOG + verify, crop, generator, SR/resize, feathered
blend) runs on the composite; then, on the pasted square of input and output:

* ``judge_target_rate`` - dlib-descriptor probes (``judge.dlib_probes``, never seen by training)
  assign the target class (gender, or race among the pair's two) to the output (descriptor in HOG's box on the input square);
* ``identity_median`` - dlib descriptor distance input vs output;
* ``face_found_outputs`` / ``_inputs`` - HOG finds the face in the square;
* ``swapped`` - the pipeline detected and translated a face overlapping the square;
* ``changed_outside_faces`` - pixels changed outside every face's crop window (must be 0).

    python benchmarks/bench_swap_e2e.py --images ../shared/data/utkface/train --val-pack ~/faceswap-runs/packs/utk_val.npz \\
        --scenes ../shared/data/sr_scenes/CSun_Hays80 --n 300 --json benchmarks/results/swap_e2e.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _composite(scene: np.ndarray, chip: np.ndarray, side: int, rng: np.random.Generator, long_side: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    from PIL import Image

    h, w = scene.shape[:2]
    k = long_side / max(h, w)
    im = Image.fromarray(scene).resize((max(side + 2, round(w * k)), max(side + 2, round(h * k))), Image.Resampling.LANCZOS)
    out = np.array(im)
    face = np.array(Image.fromarray(chip).resize((side, side), Image.Resampling.LANCZOS))
    y = int(rng.integers(0, out.shape[0] - side + 1))
    x = int(rng.integers(0, out.shape[1] - side + 1))
    out[y : y + side, x : x + side] = face
    return out, (x, y, x + side, y + side)


def _square(img: np.ndarray, box: tuple[int, int, int, int], size: int = 200) -> np.ndarray:
    from PIL import Image

    x0, y0, x1, y1 = box
    return np.array(Image.fromarray(img[y0:y1, x0:x1]).resize((size, size), Image.Resampling.LANCZOS))


def _u8(t: Any, size: int) -> np.ndarray:
    """``(3, S, S)`` float tensor in [0, 1] -> ``(size, size, 3)`` uint8 (Lanczos)."""
    from PIL import Image

    a = (t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return a if a.shape[0] == size else np.array(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS))


def run(args: argparse.Namespace, direction: str) -> dict[str, Any]:
    import imageio.v3 as iio

    import faceswap_pipeline as fp
    from faceswap_pipeline.labels import GENDERS
    from faceswap_pipeline.train.judge import Judge, describe
    from faceswap_pipeline.train.packs import FacePack

    src = direction.split("2")[0]
    pack = FacePack(args.val_pack)
    idx = pack.select(**{"gender" if src in GENDERS else "race": src}, min_age=18, max_age=70)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(idx, size=min(args.n, len(idx)), replace=False))
    names = [str(n) for n in pack.labels["name"][idx]]
    scenes = sorted(p for p in Path(args.scenes).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    pipe = fp.load_pipeline(direction, upscaler=args.upscaler, device="cpu", weights_dir=args.weights_dir,
                            blend=args.blend, mask=args.mask, harmonise=args.harmonise)
    judge = Judge(weights_dir=args.weights_dir)
    ins, outs, swapped, outside = [], [], [], []
    crops_in, crops_out, crop_idx = [], [], []  # the swapped face's letterboxed crop and the stage output, before paste-back
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        chip = iio.imread(Path(args.images) / name)[..., :3]
        side = int(rng.integers(args.min_size, args.max_size + 1))
        img, box = _composite(iio.imread(scenes[i % len(scenes)])[..., :3], chip, side, rng, args.long_side)
        out, faces = pipe(img)
        mask = np.zeros(img.shape[:2], bool)
        hit = False
        for f in faces:
            if f.transform is None:
                continue
            bx0, by0, bx1, by1 = (int(v) for v in f.transform.box)
            mask[max(0, by0) : max(0, by1), max(0, bx0) : max(0, bx1)] = True
            ix = min(bx1, box[2]) - max(bx0, box[0])
            iy = min(by1, box[3]) - max(by0, box[1])
            if ix > 0 and iy > 0 and any(a.startswith("translate") for a in f.actions):
                hit = True
                if f.crop is not None and f.output is not None and len(crops_in) == len(ins):
                    crops_in.append(_u8(f.crop, f.crop.shape[-1]))
                    crops_out.append(_u8(f.output, f.crop.shape[-1]))
                    crop_idx.append(i)
        outside.append(int((np.any(out != img, axis=2) & ~mask).sum()))
        swapped.append(hit)
        ins.append(_square(img, box))
        outs.append(_square(out, box))
    wall = time.perf_counter() - t0
    a, b = np.stack(ins), np.stack(outs)
    d_in, f_in, boxes = describe(a)
    res = judge.score(a, b, direction, inputs_desc=(d_in, f_in, boxes))
    res.update({"swapped": round(float(np.mean(swapped)), 4), "changed_outside_faces": int(np.sum(outside)),
                "pipeline_s_per_image": round(wall / len(names), 3), "face_sizes_px": [args.min_size, args.max_size]})
    if crops_in:  # the same judge on what the generator stage saw and returned: the paste-back's share of the gap
        c_in = np.stack(crops_in)
        stage = judge.score(c_in, np.stack(crops_out), direction, inputs_desc=describe(c_in))
        res["stage_output"] = {k: stage[k] for k in ("n", "judge_target_rate", "judge_target_rate_of_inputs", "identity_median",
                                                     "face_found_outputs", "face_found_inputs") if k in stage}
        res["stage_output"]["note"] = "judge on the translate stage's output (resized to the crop) vs its letterboxed crop"
        sub = judge.score(a[crop_idx], b[crop_idx], direction, inputs_desc=describe(a[crop_idx]))
        res["stage_output"]["pasted_same_faces_judge_target_rate"] = sub["judge_target_rate"]
    res.pop("grid_energy_ratio", None)  # resampled squares: not comparable with the generator's own output
    if args.sheet:
        from faceswap_pipeline.train.evaluate import contact_sheet

        contact_sheet(a[:32], b[:32], Path(args.sheet).with_name(Path(args.sheet).stem + f"_{direction}.png"))
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", required=True, help="folder of the UTKFace chips named in the validation pack")
    p.add_argument("--val-pack", required=True)
    p.add_argument("--scenes", required=True, help="folder of scene photos to paste faces into")
    p.add_argument("--directions", nargs="+", default=["male2female", "female2male"])
    p.add_argument("--n", type=int, default=100, help="faces per direction")
    p.add_argument("--min-size", type=int, default=100)
    p.add_argument("--max-size", type=int, default=300)
    p.add_argument("--long-side", type=int, default=900, help="scene photos are resized to this longer side")
    p.add_argument("--upscaler", default="srresnet", choices=["srresnet", "resize"])
    p.add_argument("--blend", default="poisson", help="paste-back blend (the pipeline's default: poisson)")
    p.add_argument("--mask", default="landmarks", help="paste-back mask: landmarks (the default) | head | ellipse | rect")
    p.add_argument("--harmonise", default="auto", help="skin-tone harmonisation at paste-back: auto | on | off")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--sheet", default=None, help="contact sheet PNG prefix (made from the data: never commit it)")
    args = p.parse_args(argv)
    import torch

    from faceswap_pipeline.machine import describe_machine

    torch.set_num_threads(args.threads)
    doc = {"machine": describe_machine("cpu"), "args": {k: v for k, v in vars(args).items() if k not in ("json", "sheet")},
           "results": {d: run(args, d) for d in args.directions}}
    print(json.dumps(doc, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

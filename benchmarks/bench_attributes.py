"""Time of the attribute classifier (one pass vs 45-window voting), prepare's per-chip work and
the identity-distance measure, on the astronaut face (runs anywhere without data).

Kornia's rules: warm-up first, then ``--repeats`` timed runs; median and inter-quartile range.

    python benchmarks/bench_attributes.py --threads 1 --json out.json

With ``--pack`` (a validation pack from ``prepare``) it also reports dlib descriptor distances
between *different* faces of the pack and between each face and its JPEG-q50 / mirrored copy,
the reference points for the identity-distance measure.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch


def quartiles(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median_ms": round(q[1] * 1e3, 2), "iqr_ms": round((q[2] - q[0]) * 1e3, 2)}


def timeit(fn, repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return quartiles(ts)


def distance_reference(pack_path: str, n: int = 100, seed: int = 0) -> dict[str, float]:
    """Descriptor distances on real faces: different people, JPEG q50 copies, mirrored copies."""
    from faceswap_pipeline.train.evaluate import face_descriptors, identity_distance
    from faceswap_pipeline.train.packs import FacePack, decode_jpeg, encode_jpeg

    pack = FacePack(pack_path)
    idx = np.sort(np.random.default_rng(seed).choice(pack.select(min_age=18, max_age=70, max_pad=0.02), n, replace=False))
    faces = pack.images(idx)
    desc, _ = face_descriptors(faces)
    perm = np.roll(np.arange(n), 1)
    diff = np.linalg.norm(desc - desc[perm], axis=1)
    jpeg = np.stack([decode_jpeg(encode_jpeg(f, 50)) for f in faces])
    d_jpeg = identity_distance(faces, jpeg)
    d_flip = identity_distance(faces, faces[:, :, ::-1].copy())

    def s(v: np.ndarray) -> dict[str, float]:
        return {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4), "frac_lt_0.6": round(float((v < 0.6).mean()), 4)}

    return {"n": n, "different_faces": s(diff), "jpeg_q50": s(d_jpeg), "mirrored": s(d_flip)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--batch", type=int, default=16, help="faces per classifier call")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--pack", default=None, help="validation pack for the distance reference numbers")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from skimage import data

    from faceswap_pipeline.stages.classify import predict
    from faceswap_pipeline.stages.crop import frame_face
    from faceswap_pipeline.stages.detect_hog import HogDetector
    from faceswap_pipeline.train.evaluate import identity_distance
    from faceswap_pipeline.train.prepare import CHIP_RESCALE, process_image
    from faceswap_pipeline.weights import load_model

    im = data.astronaut()
    det = HogDetector()
    face = det.detect(im)[0]
    crop, _ = frame_face(im, face, CHIP_RESCALE, 128)
    chip = im[64:194, 163:293]
    from PIL import Image

    chip = np.asarray(Image.fromarray(chip).resize((200, 200), Image.BICUBIC))
    model = load_model("attributes.v1", weights_dir=args.weights_dir)
    x = crop[None].repeat(args.batch, 1, 1, 1)
    u8 = (crop.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)[None]
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s), no GPU",
        "torch": torch.__version__,
        "batch": args.batch,
        "classify_single_pass_per_batch": timeit(lambda: predict(model, x, voting=False), args.repeats),
        "classify_voting45_per_batch": timeit(lambda: predict(model, x, voting=True, batch_size=args.batch), args.repeats),
        "prepare_per_chip": timeit(lambda: process_image(chip, CHIP_RESCALE, 128, det), args.repeats),
        "identity_distance_per_pair": timeit(lambda: identity_distance(u8, u8), args.repeats),
    }
    with torch.inference_mode():
        res["astronaut"] = {k: [round(float(v), 4) for v in t[0].flatten()] for k, t in predict(model, crop[None], voting=True).items()}
    if args.pack:
        res["distance_reference"] = distance_reference(args.pack)
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()

"""The independent judge of a swap, and the quality figures that go beside it: measured by nothing any training loss sees.

A swap is judged by something **no training loss ever sees**: linear probes
(:class:`~faceswap_pipeline.archs.judge.DescriptorProbes`) on dlib's 128-D face descriptors
(``dlib_face_recognition_resnet_model_v1`` from ``face_recognition_models``), fitted here with
scikit-learn's logistic regression on training-split faces only and scored on validation faces.
The attribute network (which training losses may use) is reported beside it; a large gap between
the two is the sign of a generator that fools its teacher with texture.

A judge alone rewards degraded faces, so :meth:`Judge.score` always pairs the target rate with:

* ``identity`` - dlib descriptor distance input vs output (< 0.6: same person for dlib);
* ``face_found`` - share of outputs in which dlib's HOG still finds the face, against the inputs';
* ``realism_fd`` - Frechet distance between descriptors of the outputs and of real target-domain
  validation faces, beside the real-vs-real distance (two disjoint real sets) and the distance of
  the unchanged inputs;
* ``sharpness_ratio`` - median over faces of the variance of the Laplacian of the output over the input's;
* ``grid_energy_ratio`` - spectral energy at the 2-px period (the checkerboard of transposed
  convolutions) of outputs over inputs;
* ``race_kept`` (gender swaps) / ``gender_kept`` (race swaps) - share of faces whose judged value of
  the attribute the swap must not change is the same before and after.

Command line::

    python -m faceswap_pipeline.train.judge fit --train-pack P/utk_train.npz --val-pack P/utk_val.npz \\
        --cache ~/faceswap-runs/judge --out-dir weights
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceswap_pipeline.labels import AGE_BANDS, GENDERS, RACES, age_band, age_band_names
from faceswap_pipeline.ops.geometry import CHIP_RESCALE

log = logging.getLogger(__name__)

JUDGE_NAME = "judge.dlib_probes"
DEFAULT_RESCALE = CHIP_RESCALE


# ------------------------------------------------------------------------------ descriptors
def describe(
    images_u8: np.ndarray, rescale: Sequence[float] = DEFAULT_RESCALE, boxes: Sequence[Sequence[float]] | None = None
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, float, float]]]:
    """dlib descriptors of face crops, whether HOG found each face, and the boxes used.

    Args:
        images_u8: ``(N, S, S, 3)`` uint8 RGB letterboxed face crops.
        rescale: the crops' framing (fallback box where HOG finds no face).
        boxes: measure at these boxes instead of detecting (``found`` is then all True).

    Returns:
        ``(desc (N, 128) float32, found (N,) bool, boxes)``.
    """
    from faceswap_pipeline.train.evaluate import face_boxes, face_descriptors

    if boxes is None:
        boxes, found = face_boxes(images_u8, rescale)
    else:
        found = np.ones(len(images_u8), dtype=bool)
    desc, used = face_descriptors(images_u8, boxes, rescale)
    return desc, found, used


def _describe_chunk(args: tuple[np.ndarray, tuple[float, ...]]) -> tuple[np.ndarray, np.ndarray]:
    images, rescale = args
    torch.set_num_threads(1)
    d, f, _ = describe(images, rescale)
    return d, f


def pack_descriptors(
    pack_path: str | Path, idx: np.ndarray, cache_dir: str | Path | None, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors and HOG-found flags of faces ``idx`` of a pack, cached as ``.npz`` (no pickle).

    The cache key is the pack's file name and size plus the indices, so a rebuilt pack is re-measured.
    """
    from faceswap_pipeline.train.packs import FacePack

    pack_path = Path(pack_path)
    idx = np.asarray(idx, dtype=np.int64)
    key = hashlib.sha1(f"{pack_path.name}:{pack_path.stat().st_size}:".encode() + idx.tobytes()).hexdigest()[:16]
    cache = Path(cache_dir) / f"desc_{pack_path.stem}_{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return z["desc"], z["found"]
    pack = FacePack(pack_path)
    rescale = tuple(pack.meta.get("framing", {}).get("rescale", DEFAULT_RESCALE))
    t0 = time.perf_counter()
    chunks = np.array_split(idx, max(1, workers * 4))
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_describe_chunk, [(pack.images(c), rescale) for c in chunks if len(c)])
    else:
        parts = [_describe_chunk((pack.images(c), rescale)) for c in chunks if len(c)]
    desc = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 128), np.float32)
    found = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, bool)
    log.info("descriptors of %d faces of %s in %.0f s", len(idx), pack_path.name, time.perf_counter() - t0)
    if cache is not None:
        from faceswap_pipeline.train.packs import atomic_savez

        atomic_savez(cache, desc=desc, found=found)
    return desc, found


# ------------------------------------------------------------------------------------ fitting
def _to_linear(clf: Any, n_classes: int, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fitted sklearn LogisticRegression as full ``(n_classes, D)`` weights and ``(n_classes,)`` biases."""
    coef, icpt = clf.coef_, clf.intercept_
    w = np.zeros((n_classes, coef.shape[1]), np.float32)
    b = np.full(n_classes, -1e4, np.float32)  # classes absent from training can never win
    if coef.shape[0] == 1:  # binary: logit of classes[1] against classes[0]
        w[classes[1]], b[classes[1]] = coef[0], icpt[0]
        b[classes[0]] = 0.0
    else:
        for k, c in enumerate(classes):
            w[c], b[c] = coef[k], icpt[k]
    return w, b


def fit_probes(desc: np.ndarray, labels: dict[str, np.ndarray], c: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """Fit the three probes by (multinomial) logistic regression.

    Args:
        desc: ``(N, 128)`` float32 training descriptors.
        labels: ``gender`` (N,), ``race`` (N,), ``age`` (N,) integer arrays (UTKFace codes / years).
        c: inverse L2 regularisation strength.

    Returns:
        A :class:`~faceswap_pipeline.archs.judge.DescriptorProbes` in eval mode.
    """
    from sklearn.linear_model import LogisticRegression

    from faceswap_pipeline.archs.judge import DescriptorProbes

    targets = {
        "gender": (labels["gender"].astype(np.int64), len(GENDERS)),
        "race": (labels["race"].astype(np.int64), len(RACES)),
        "age_band": (np.array([age_band(a) for a in labels["age"]], np.int64), len(AGE_BANDS)),
    }
    probes = DescriptorProbes(desc.shape[1])
    for head, (y, k) in targets.items():
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(desc, y)
        w, b = _to_linear(clf, k, clf.classes_)
        lin = getattr(probes, head)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
    return probes.eval()


@torch.no_grad()
def probe_logits(probes: torch.nn.Module, desc: np.ndarray) -> dict[str, np.ndarray]:
    """Logits of every head. Shape: (N, 128) -> dict of (N, K) float32 arrays."""
    out = probes(torch.from_numpy(np.ascontiguousarray(desc, dtype=np.float32)))
    return {k: v.numpy() for k, v in out.items()}


def probe_accuracy(probes: torch.nn.Module, desc: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Validation accuracy of each head, overall and per gender, race and age band."""
    lg = probe_logits(probes, desc)
    g, r = labels["gender"].astype(np.int64), labels["race"].astype(np.int64)
    ab = np.array([age_band(a) for a in labels["age"]], np.int64)
    ok = {"gender": lg["gender"].argmax(1) == g, "race": lg["race"].argmax(1) == r, "age_band": lg["age_band"].argmax(1) == ab}

    def acc(m: np.ndarray, sel: np.ndarray) -> float | None:
        return round(float(m[sel].mean()), 4) if sel.any() else None

    res: dict[str, Any] = {"n": int(len(desc))}
    for head, m in ok.items():
        res[head] = {
            "all": acc(m, np.ones(len(m), bool)),
            "by_gender": {n: acc(m, g == i) for i, n in enumerate(GENDERS)},
            "by_race": {n: acc(m, r == i) for i, n in enumerate(RACES)},
            "by_age_band": {n: acc(m, ab == i) for i, n in enumerate(age_band_names())},
        }
    return res


# ---------------------------------------------------------------------------- image measures
def _grey(u8: np.ndarray) -> np.ndarray:
    return (u8.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


def laplacian_variance(images_u8: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of each grey image (a sharpness figure). (N, H, W, 3) -> (N,)."""
    g = _grey(images_u8)
    lap = g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(g), -1).var(1)


def grid_energy(images_u8: np.ndarray) -> np.ndarray:
    """Share of each grey image's spectral energy (DC excluded) at the 2-px period (the Nyquist row and column).

    A regular 2-px checkerboard or stripe pattern, as transposed convolutions leave, shows up here.
    Shape: (N, H, W, 3) uint8 -> (N,) float64.
    """
    g = _grey(images_u8).astype(np.float64)
    g = g - g.mean(axis=(1, 2), keepdims=True)
    p = np.abs(np.fft.fft2(g)) ** 2
    h, w = g.shape[1:]
    nyq = p[:, h // 2, :].sum(1) + p[:, :, w // 2].sum(1) - p[:, h // 2, w // 2]
    return nyq / np.maximum(p.reshape(len(g), -1).sum(1), 1e-12)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of vectors ``(N, D)`` and ``(M, D)``."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


# ------------------------------------------------------------------------------------- judge
def target_class(direction: str) -> tuple[str, int, tuple[int, ...]]:
    """``(head, target index, classes competing)`` of a direction, e.g. ``("gender", 1, (0, 1))`` for male2female.

    Race directions compare only the pair's two races.
    """
    src, sep, dst = direction.partition("2")
    if not sep:
        raise ValueError(f"direction {direction!r} is not '<domain>2<domain>'")
    if src in GENDERS and dst in GENDERS:
        return "gender", GENDERS.index(dst), (0, 1)
    if src in RACES and dst in RACES:
        return "race", RACES.index(dst), (RACES.index(src), RACES.index(dst))
    raise ValueError(f"direction {direction!r}: domains must both be genders {GENDERS} or races {RACES}")


class Judge:
    """Scores swapped faces with the shipped probes (never used in training) plus quality figures.

    Args:
        probes: fitted probes; default: the shipped ``judge.dlib_probes`` (sha256-verified).
        attr_model: the attribute network, whose rate is reported beside the judge's (optional).
        rescale: framing of the crops.
    """

    def __init__(self, probes: torch.nn.Module | None = None, attr_model: torch.nn.Module | None = None,
                 rescale: Sequence[float] = DEFAULT_RESCALE, weights_dir: str | None = None) -> None:
        if probes is None:
            from faceswap_pipeline.weights import load_model

            probes = load_model(JUDGE_NAME, weights_dir=weights_dir)
        self.probes = probes.eval()
        self.attr = attr_model
        self.rescale = tuple(rescale)

    def hits(self, desc: np.ndarray, direction: str) -> np.ndarray:
        """(N,) bool: the judge assigns the target class (among the pair's classes)."""
        head, tgt, classes = target_class(direction)
        lg = probe_logits(self.probes, desc)[head][:, list(classes)]
        return np.asarray(classes)[lg.argmax(1)] == tgt

    def kept(self, d_in: np.ndarray, d_out: np.ndarray, head: str) -> float:
        """Share of faces whose judged ``head`` class (e.g. ``"race"``) is the same in input and output descriptors."""
        a = probe_logits(self.probes, d_in)[head].argmax(1)
        b = probe_logits(self.probes, d_out)[head].argmax(1)
        return round(float((a == b).mean()), 4)

    def score(
        self,
        inputs_u8: np.ndarray,
        outputs_u8: np.ndarray,
        direction: str,
        real_target_desc: np.ndarray | None = None,
        inputs_desc: tuple[np.ndarray, np.ndarray, list] | None = None,
    ) -> dict[str, Any]:
        """Every figure for one direction.

        Args:
            inputs_u8, outputs_u8: ``(N, S, S, 3)`` uint8 source faces and their translations.
            direction: e.g. ``"male2female"``.
            real_target_desc: descriptors of real target-domain validation faces (``(M, 128)``,
                M >= 2N advised: the figures use ``k = min(N, M // 2)`` faces of each set); None
                skips the realism figures.
            inputs_desc: a cached ``describe(inputs_u8)`` result.

        Returns:
            A flat dict of rounded figures (see the module docstring).
        """
        d_in, f_in, boxes = inputs_desc if inputs_desc is not None else describe(inputs_u8, self.rescale)
        from faceswap_pipeline.train.evaluate import face_boxes

        found_out = face_boxes(outputs_u8, self.rescale)[1]
        d_out, _, _ = describe(outputs_u8, self.rescale, boxes=boxes)
        hit_out, hit_in = self.hits(d_out, direction), self.hits(d_in, direction)
        ident = np.linalg.norm(d_in - d_out, axis=1)
        lv_in, lv_out = laplacian_variance(inputs_u8), laplacian_variance(outputs_u8)
        r: dict[str, Any] = {
            "direction": direction,
            "n": int(len(inputs_u8)),
            "judge_target_rate": round(float(hit_out.mean()), 4),
            "judge_target_rate_of_inputs": round(float(hit_in.mean()), 4),
            "identity_median": round(float(np.median(ident)), 4),
            "identity_mean": round(float(ident.mean()), 4),
            "frac_same_person": round(float((ident < 0.6).mean()), 4),
            "face_found_outputs": round(float(found_out.mean()), 4),
            "face_found_inputs": round(float(f_in.mean()), 4),
            "sharpness_ratio": round(float(np.median(lv_out / np.maximum(lv_in, 1e-9))), 4),
            "grid_energy_ratio": round(float(grid_energy(outputs_u8).mean() / max(grid_energy(inputs_u8).mean(), 1e-12)), 4),
        }
        # the attribute the swap must not change (race for a gender swap, gender for a race swap)
        head, _, _ = target_class(direction)
        other = "race" if head == "gender" else "gender"
        r[f"{other}_kept"] = self.kept(d_in, d_out, other)
        if self.attr is not None:
            from faceswap_pipeline.train.evaluate import target_rate

            _, dst = direction.split("2", 1)
            r["attr_target_rate"] = round(target_rate(self.attr, outputs_u8, dst, voting=False), 4)
            r["attr_target_rate_of_inputs"] = round(target_rate(self.attr, inputs_u8, dst, voting=False), 4)
        if real_target_desc is not None and min(len(inputs_u8), len(real_target_desc) // 2) >= 8:
            k = min(len(inputs_u8), len(real_target_desc) // 2)  # equal set sizes: FD is biased by N
            ref, other = real_target_desc[:k], real_target_desc[k : 2 * k]
            r["realism_n"] = k
            r["realism_fd"] = round(frechet_distance(d_out[:k], ref), 4)
            r["realism_fd_real_vs_real"] = round(frechet_distance(other, ref), 4)
            r["realism_fd_of_inputs"] = round(frechet_distance(d_in[:k], ref), 4)
        return r


# -------------------------------------------------------------------------------------- main
def _labels(pack: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: pack.labels[k][idx] for k in ("gender", "race", "age")}


def main_fit(args: argparse.Namespace) -> int:
    from faceswap_pipeline.machine import describe_machine
    from faceswap_pipeline.train.packs import FacePack
    from faceswap_pipeline.weights import register_weights, save_weights

    t0 = time.process_time()
    w0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    train, val = FacePack(args.train_pack), FacePack(args.val_pack)
    ti = np.arange(len(train)) if not args.n_train or args.n_train >= len(train) else np.sort(rng.choice(len(train), args.n_train, replace=False))
    vi = np.arange(len(val)) if not args.n_val or args.n_val >= len(val) else np.sort(rng.choice(len(val), args.n_val, replace=False))
    dt, ft = pack_descriptors(args.train_pack, ti, args.cache, args.workers)
    dv, fv = pack_descriptors(args.val_pack, vi, args.cache, args.workers)
    keep = ft  # fit on faces HOG found (the descriptor of a missed face is measured in the framing box)
    probes = fit_probes(dt[keep], _labels(train, ti[keep]), c=args.c, seed=args.seed)
    acc = probe_accuracy(probes, dv, _labels(val, vi))
    acc_adult = probe_accuracy(probes, dv[val.labels["age"][vi] >= 18], _labels(val, vi[val.labels["age"][vi] >= 18]))
    log.info("validation accuracy: gender %.4f race %.4f age band %.4f", acc["gender"]["all"], acc["race"]["all"], acc["age_band"]["all"])
    fname = "judge_dlib_probes.safetensors"
    sha = save_weights(probes, Path(args.out_dir) / fname, arch="descriptor_probes", kwargs={"dim": 128}, storage="fp32")
    entry = {
        "file": fname,
        "sha256": sha,
        "arch": "descriptor_probes",
        "kwargs": {"dim": 128},
        "storage": "fp32",
        "io": {"input": "(B, 128) dlib_face_recognition_resnet_model_v1 descriptors, 5-point landmarks in HOG's box on the 128 px crop"},
        "framing": train.meta.get("framing", {}),
        "training": {
            "command": "python -m faceswap_pipeline.train.judge " + " ".join(sys.argv[1:]),
            "data": f"{Path(args.train_pack).name}: {int(keep.sum())} faces HOG found of {len(ti)} drawn (seed {args.seed})",
            "method": f"sklearn LogisticRegression(C={args.c}), multinomial; heads gender / race / age band {list(age_band_names())}",
            "cpu_time_s": round(time.process_time() - t0, 1),
            "wall_time_s": round(time.perf_counter() - w0, 1),
            "machine": describe_machine("cpu"),
            "note": "independent judge: no training loss of this project uses these probes or dlib's descriptor network",
        },
        "metrics": {"val_all_ages": acc, "val_adults": acc_adult, "val_hog_found": round(float(fv.mean()), 4)},
    }
    register_weights(JUDGE_NAME, entry, weights_dir=args.out_dir)
    print(json.dumps(entry["metrics"], indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m faceswap_pipeline.train.judge", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit the probes on a train pack, score them on a val pack, write weights + manifest")
    f.add_argument("--train-pack", required=True)
    f.add_argument("--val-pack", required=True)
    f.add_argument("--cache", default=None, help="folder for cached descriptors (outside the checkout)")
    f.add_argument("--out-dir", default="weights")
    f.add_argument("--n-train", type=int, default=8000, help="training faces drawn at random (0 = all)")
    f.add_argument("--n-val", type=int, default=0, help="validation faces (0 = all)")
    f.add_argument("--c", type=float, default=1.0)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--workers", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    return main_fit(args)


if __name__ == "__main__":
    sys.exit(main())

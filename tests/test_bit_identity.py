"""Outputs and checkpoints that must stay bit-identical across refactors.

The output hashes (torch 2.13.0 CPU build) pin the demo's before/after image (with the ellipse
mask and feather blend it once had, and with today's defaults), a folder run's outputs and the
swapped astronaut of the Python API. They were first recorded before the training scaffold /
folder runner refactor and held through it; they were re-recorded on 2026-12-02 when new
male<->female generators shipped and Poisson blending became the default, and again for the
int4 `recipe5` generators (2026-12-02, their 100-CPU-min successors on 2026-12-03, and the
attribute-weight-3 `recipe5pa3` generators on 2026-12-04; a change of weights or of a default
changes outputs on purpose). A tiny CycleGAN checkpoint written by the old code
(``tests/data/cyclegan_ckpt_format1.pt``) must still load and resume exactly as today's own checkpoint
of that state does, with the recorded losses.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import faceswap_pipeline as fp
from faceswap_pipeline.cli import main

DEMO_PNG_SHA256 = "9b420d3af62dbc857adaa166c9965e141e012fb4ce7792927c09747580e86f89"
SWAPPED_PNG_SHA256 = "9cba8168dac58525da0a70feb4806680d52ce53f4c927679a391936af53e3919"
API_PIXELS_SHA256 = "7d2af67f3c9b654da9e2d3ee4295973afa9936f3a3e29c574e5c3b998fa4f15c"
CKPT = Path(__file__).parent / "data" / "cyclegan_ckpt_format1.pt"
RESUMED_G_CYCLE = [8.424315452575684, 8.133246421813965]  # with one CPU thread (conftest)

# Recorded with today's default paste-back (landmark face mask, SR x4, Poisson blend) and the
# weights below: a change of these weights changes the outputs, and the hashes are then
# re-recorded with the new weights.
DEMO_MODELS = {
    "cyclegan.female2male": "628834744f65e612", "cyclegan.male2female": "e9b002c4b4d60d55",
    "srresnet.x4": "9ea86adbb9c69e21", "srresnet.x2": "e9a75921ea221a49", "landmarks.v1": "3e4c8f1eec692371",
    "cascade.48net": "422a98689c3abbb7",
}
DEMO_DEFAULT_SHA256 = {
    "astronaut_before_after.png": "96f7b2b8daee6d5ffc41d5dc5e7af2f3dc05a909685e1d6a79edb3f6887a102e",
    "astronaut_swapped.png": "6b2066a68703a129ea3523b7ceb73aa8e6066ba19ebf8f643493d4cee996148c",
}
# `run --direction male2female` over a folder (PNG, greyscale PNG, JPEG in a sub-folder, a photo
# with no face, an unreadable file), one image at a time and two at a time
FOLDER_RUN_SHA256 = {
    "astro.png": "ffe11e17ca99ffe0072ba9d824c0e610a66dc577642efb779dac1ad0a4674460",
    "grey.png": "cd44a8e0981eaf9a2c0d683238ca2ce10076fde45df2282ccc4011889388be52",
    "sub/astro.jpg": "f100af8c0acd3fc30e3754713e76271378612010df20aedcd664b85385b3808e",
}

pytestmark = pytest.mark.skipif(torch.__version__.split("+")[0] != "2.13.0", reason="hashes recorded with torch 2.13.0")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_demo_output_is_bit_identical(tmp_path: Path) -> None:
    # the paste-back these hashes were recorded with: ellipse feather (face masks became the default later)
    assert main(["demo", "--output-dir", str(tmp_path), "-q", "--mask", "ellipse", "--blend", "feather"]) == 0
    assert _sha((tmp_path / "astronaut_before_after.png").read_bytes()) == DEMO_PNG_SHA256
    assert _sha((tmp_path / "astronaut_swapped.png").read_bytes()) == SWAPPED_PNG_SHA256


def _check_demo_models() -> None:
    from faceswap_pipeline.weights import model_entry

    got = {name: model_entry(name)["sha256"][:16] for name in DEMO_MODELS}
    assert got == DEMO_MODELS, "the shipped weights changed: re-record the output hashes with the new ones"


def test_demo_default_output_is_bit_identical(tmp_path: Path) -> None:
    _check_demo_models()
    assert main(["demo", "--output-dir", str(tmp_path), "-q"]) == 0
    assert {p.name: _sha(p.read_bytes()) for p in sorted(tmp_path.iterdir())} == DEMO_DEFAULT_SHA256


def test_folder_run_outputs_are_bit_identical(tmp_path: Path, astronaut: np.ndarray) -> None:
    import json

    from PIL import Image
    from skimage import data

    _check_demo_models()
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "astro.png")
    Image.fromarray(astronaut).save(src / "sub" / "astro.jpg", quality=90)
    Image.fromarray(astronaut[:, :, 1]).save(src / "grey.png")
    Image.fromarray(data.coffee()).save(src / "coffee.jpg", quality=85)
    (src / "broken.png").write_bytes(b"not an image")
    for batch in ("1", "2"):
        out, rep = tmp_path / f"out{batch}", tmp_path / f"report{batch}.json"
        assert main(["run", str(src), str(out), "--direction", "male2female", "--batch-size", batch,
                     "--report", str(rep), "-q"]) == 1  # broken.png fails, alone
        got = {p.relative_to(out).as_posix(): _sha(p.read_bytes()) for p in sorted(out.rglob("*"))
               if p.is_file() and not p.name.startswith(".")}
        assert (out / "coffee.jpg").read_bytes() == (src / "coffee.jpg").read_bytes()  # no face: copied
        assert {k: v for k, v in got.items() if k != "coffee.jpg"} == FOLDER_RUN_SHA256
        items = {it["input"]: it for it in json.loads(rep.read_text())["items"]}
        assert [items[k]["status"] for k in sorted(items)] == ["ok", "error", "ok", "ok", "ok"]
        assert items["broken.png"]["error"] == "ImageReadError: not a recognised image format"
        assert items["grey.png"]["info"]["faces"][0]["actions"] == ["translate:male2female", "grey", "blend"]


def test_api_swap_is_bit_identical(astronaut: np.ndarray) -> None:
    out, faces = fp.load_pipeline("male2female", upscaler="resize", mask="ellipse", blend="feather")(astronaut)
    assert len(faces) == 1
    assert _sha(np.ascontiguousarray(out).tobytes()) == API_PIXELS_SHA256


def _resume(ck: dict, tmp_path: Path) -> tuple[str, list[float]]:
    """Resume ``ck`` in a fresh tiny trainer to step 6; the nets' sha256 and the logged G_cycle."""
    from test_train_cyclegan import _cfg, _trainer

    tr = _trainer(_cfg(tmp_path, n_steps=6, n_steps_decay=3, g_pretrain_steps=2, ndf=4, n_layers=2))
    tr.load_state_dict(ck)
    logs: list[dict[str, float]] = []
    tr.fit(on_log=logs.append)
    assert tr.step == 6
    h = hashlib.sha256()
    for n in ("G_m2f", "G_f2m", "D_m", "D_f"):
        for v in tr.nets[n].state_dict().values():
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest(), [r["G_cycle"] for r in logs]


def test_old_checkpoint_resumes_bit_identically(tmp_path: Path) -> None:
    """The old checkpoint resumes exactly as today's own checkpoint of the same state does.

    Float kernels differ between CPU kinds (AVX2 vs AVX-512/AMX), so the weights' hash is compared
    within one machine (old file vs the same state re-saved in today's format) and the losses
    against the recorded ones to float32 rounding.
    """
    from test_train_cyclegan import _cfg, _trainer

    from faceswap_pipeline.train import cyclegan as cg

    ck = cg.load_checkpoint(CKPT)
    assert ck["format"] == "faceswap_pipeline/cyclegan-ckpt/1" and ck["step"] == 3 and ck["pretrain_step"] == 2
    tr = _trainer(_cfg(tmp_path / "a", n_steps=6, n_steps_decay=3, g_pretrain_steps=2, ndf=4, n_layers=2))
    tr.load_state_dict(ck)
    resaved = cg.load_checkpoint(tr.save(tmp_path / "resaved.pt"))
    assert resaved["step"] == 3 and resaved["pretrain_step"] == 2
    sha_old, cyc_old = _resume(ck, tmp_path / "b")
    sha_new, cyc_new = _resume(resaved, tmp_path / "c")
    assert sha_old == sha_new and cyc_old == cyc_new
    assert cyc_old == pytest.approx(RESUMED_G_CYCLE, rel=1e-4)

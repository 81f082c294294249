"""Outputs and checkpoints that must stay bit-identical across refactors.

The output hashes (torch 2.13.0 CPU build) pin the demo's before/after image (with the ellipse
mask and feather blend it once had, and with today's defaults), a folder run's outputs and the
swapped astronaut of the Python API. They were first recorded before the training scaffold /
folder runner refactor and held through it; they were re-recorded on 2026-12-02 when new
male<->female generators shipped and Poisson blending became the default, and again for the
int4 `recipe5` generators (2026-12-02, and their 100-CPU-min successors on 2026-12-03; a change of weights or
of a default changes outputs on purpose). A tiny CycleGAN checkpoint written by the old code
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

DEMO_PNG_SHA256 = "e4311c94f6314ae136c0d9caba26156f3c115bdcbcd34bb17aa2ce70c3284a12"
SWAPPED_PNG_SHA256 = "6e5efdbe1a4339526f2c9ddf62cc8c6e865282e9403b3d007861d11d23309f79"
API_PIXELS_SHA256 = "e343f5dfd0eb1b28d49a53e4869543a621790769890718380d21013a417068bd"
CKPT = Path(__file__).parent / "data" / "cyclegan_ckpt_format1.pt"
RESUMED_G_CYCLE = [8.424315452575684, 8.133246421813965]  # with one CPU thread (conftest)

# Recorded with today's default paste-back (landmark face mask, SR x4, Poisson blend) and the
# weights below: a change of these weights changes the outputs, and the hashes are then
# re-recorded with the new weights.
DEMO_MODELS = {
    "cyclegan.female2male": "840b2c1ac9d1f5ca", "cyclegan.male2female": "e5e377482e2502f1",
    "srresnet.x4": "9ea86adbb9c69e21", "srresnet.x2": "e9a75921ea221a49", "landmarks.v1": "3e4c8f1eec692371",
    "cascade.48net": "422a98689c3abbb7",
}
DEMO_DEFAULT_SHA256 = {
    "astronaut_before_after.png": "e9a178235935d08a5b54c74690976c77c1353e8524faaa8e4b5f57a830b9967f",
    "astronaut_swapped.png": "e2a7ee137d04f6d2a683a75e87a87c9c294e4401757f86204bf90a4c4f06b873",
}
# `run --direction male2female` over a folder (PNG, greyscale PNG, JPEG in a sub-folder, a photo
# with no face, an unreadable file), one image at a time and two at a time
FOLDER_RUN_SHA256 = {
    "astro.png": "9f04e221ac11680c676714c0a29b6242093f52e678f0b8e7ac61271104209a11",
    "grey.png": "6d2433378a6271375a0c3a10ba38887b89d0b4acaa70e7068e757824a4d50611",
    "sub/astro.jpg": "a80a4d056a5a326a11f73c9912148cef01885836ba35336e265d61094154f0b1",
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

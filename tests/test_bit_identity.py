"""Outputs and checkpoints that must stay bit-identical across refactors.

The hashes were recorded with the code before the training scaffold / folder runner refactor
(torch 2.13.0 CPU build): the demo's before/after image, the swapped astronaut of the Python API,
and a tiny CycleGAN checkpoint written by that code (``tests/data/cyclegan_ckpt_format1.pt``),
which today's trainer must load and resume to exactly the same weights and losses.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import faceswap_pipeline as fp
from faceswap_pipeline.cli import main

DEMO_PNG_SHA256 = "aaf7a857825befd96c7d1f3abca5a928268fe194935f517233822d6ff226625f"
SWAPPED_PNG_SHA256 = "dc7de85a72e4399596d0030b722687bfd0150a4bcbc52231e96e6f0ed14ff0a2"
API_PIXELS_SHA256 = "b802bd6d040ac79bc1e57208cd56cf24bb7883da9f44af7ebb94d05129b484d8"
CKPT = Path(__file__).parent / "data" / "cyclegan_ckpt_format1.pt"
RESUMED_NETS_SHA256 = "883be0d8a3a77ab7963f80c5fa216d92a59fb90c54cacdb06a95ff1afffc3c66"
RESUMED_G_CYCLE = [8.424315452575684, 8.133246421813965]  # with one CPU thread (conftest)

pytestmark = pytest.mark.skipif(torch.__version__.split("+")[0] != "2.13.0", reason="hashes recorded with torch 2.13.0")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_demo_output_is_bit_identical(tmp_path: Path) -> None:
    # the paste-back these hashes were recorded with: ellipse feather (issue 17 made face masks the default)
    assert main(["demo", "--output-dir", str(tmp_path), "-q", "--mask", "ellipse"]) == 0
    assert _sha((tmp_path / "astronaut_before_after.png").read_bytes()) == DEMO_PNG_SHA256
    assert _sha((tmp_path / "astronaut_swapped.png").read_bytes()) == SWAPPED_PNG_SHA256


def test_api_swap_is_bit_identical(astronaut: np.ndarray) -> None:
    out, faces = fp.load_pipeline("male2female", upscaler="resize", mask="ellipse")(astronaut)
    assert len(faces) == 1
    assert _sha(np.ascontiguousarray(out).tobytes()) == API_PIXELS_SHA256


def test_old_checkpoint_resumes_bit_identically(tmp_path: Path) -> None:
    from test_train_cyclegan import _cfg, _trainer

    from faceswap_pipeline.train import cyclegan as cg

    ck = cg.load_checkpoint(CKPT)
    assert ck["format"] == "faceswap_pipeline/cyclegan-ckpt/1" and ck["step"] == 3 and ck["pretrain_step"] == 2
    tr = _trainer(_cfg(tmp_path, n_steps=6, n_steps_decay=3, g_pretrain_steps=2, ndf=4, n_layers=2))
    tr.load_state_dict(ck)
    logs: list[dict[str, float]] = []
    tr.fit(on_log=logs.append)
    assert tr.step == 6
    h = hashlib.sha256()
    for n in ("G_m2f", "G_f2m", "D_m", "D_f"):
        for v in tr.nets[n].state_dict().values():
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    assert h.hexdigest() == RESUMED_NETS_SHA256
    assert [r["G_cycle"] for r in logs] == RESUMED_G_CYCLE

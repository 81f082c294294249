"""Shared fixtures: real photos a dependency ships, synthetic canvases, tiny weights folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # tests run in parallel workers (pytest -n 2) on a 2-core machine

ASTRONAUT_FACE = (175.0, 76.0, 266.0, 167.0)
"""dlib HOG's box (upsample 1) for the face in ``skimage.data.astronaut()``."""


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 RGB, one frontal face


@pytest.fixture(scope="session")
def face_patch(astronaut) -> np.ndarray:
    """The astronaut's face with some margin: (160, 150, 3) uint8, a face HOG finds on any background."""
    return astronaut[46:206, 145:295].copy()


@pytest.fixture(scope="session")
def multi_face_canvas(face_patch) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A 400x900 grey canvas with three copies of the face; returns it and the paste corners."""
    canvas = np.full((400, 900, 3), 128, np.uint8)
    corners = [(20, 30), (330, 200), (650, 60)]
    for x, y in corners:
        canvas[y : y + face_patch.shape[0], x : x + face_patch.shape[1]] = face_patch
    return canvas, corners


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """A weights folder with small seeded CycleGAN generators for every gender direction.

    The generators are random-init tiny networks: they exercise loading, verification and the
    pipeline's plumbing, not swap quality (the shipped weights are tested separately).
    """
    from faceswap_pipeline.archs.cyclegan import ResnetGenerator
    from faceswap_pipeline.weights import register_weights, save_weights

    folder = tmp_path_factory.mktemp("weights")
    kwargs = {"ngf": 4, "n_blocks": 1}
    for i, d in enumerate(("male2female", "female2male")):
        torch.manual_seed(i)
        g = ResnetGenerator(**kwargs)
        sha = save_weights(g, folder / f"g_{d}.safetensors", arch="cyclegan_resnet", kwargs=kwargs, storage="fp32")
        register_weights(
            f"cyclegan.{d}",
            {"file": f"g_{d}.safetensors", "sha256": sha, "arch": "cyclegan_resnet", "kwargs": kwargs, "storage": "fp32",
             "io": {"range": [-1, 1], "size": 128}, "framing": {"rescale": [1.1, 1.5, 1.1, 1.3], "size": 128}},
            folder,
        )
    return str(folder)


def _shipped_minus_white_black(folder):
    """A stand-in for the shipped weights folder: the manifest minus the white <-> black generators, files linked."""
    import json

    import faceswap_pipeline.weights as w

    src = w.shipped_dir()
    for f in src.iterdir():
        if f.name != w.MANIFEST:
            (folder / f.name).symlink_to(f)
    doc = json.loads((src / w.MANIFEST).read_text())
    doc["models"] = {k: v for k, v in doc["models"].items() if k not in ("cyclegan.white2black", "cyclegan.black2white")}
    (folder / w.MANIFEST).write_text(json.dumps(doc))
    return folder


@pytest.fixture
def hide_untrained(tmp_path_factory, monkeypatch):
    """The shipped weights without the white <-> black generators, for one test of a direction that
    has no trained model (the refusal messages)."""
    import faceswap_pipeline.weights as w

    dst = _shipped_minus_white_black(tmp_path_factory.mktemp("shipped-minus-white-black"))
    monkeypatch.setattr(w, "shipped_dir", lambda: dst)
    return dst


@pytest.fixture(scope="module")
def hide_untrained_module(tmp_path_factory):
    """:func:`hide_untrained` for all of one module's tests (e.g. a module-scoped web service)."""
    import faceswap_pipeline.weights as w

    dst = _shipped_minus_white_black(tmp_path_factory.mktemp("shipped-minus-white-black"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(w, "shipped_dir", lambda: dst)
        yield dst

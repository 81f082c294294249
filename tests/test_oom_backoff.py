"""Out-of-memory back-off: a network stage halves its face batch and retries, never losing a face."""

from __future__ import annotations

import logging

import pytest
import torch

from faceswap_pipeline.pipeline import Pipeline
from faceswap_pipeline.stages.base import for_chunks, is_out_of_memory
from faceswap_pipeline.stages.crop import CropLetterbox
from faceswap_pipeline.stages.detect_hog import HogDetector
from faceswap_pipeline.stages.translate import Translator
from faceswap_pipeline.types import ImageRecord


class Fits(torch.nn.Module):
    """Identity-like generator that "runs out of memory" on batches larger than ``limit``."""

    def __init__(self, limit: int, error: type[BaseException] = torch.OutOfMemoryError) -> None:
        super().__init__()
        self.limit, self.error, self.calls = limit, error, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return -x


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("out of memory"))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_translator_halves_its_batch_and_keeps_every_face(multi_face_canvas, astronaut, caplog, error) -> None:
    gen = Fits(limit=2, error=error)
    tr = Translator({"male2female": gen}, "male2female", batch_size=8)
    pipe = Pipeline([HogDetector(threshold=0.5), CropLetterbox(), tr])
    with caplog.at_level(logging.WARNING):
        recs = pipe.process([ImageRecord(image=multi_face_canvas[0]), ImageRecord(image=astronaut)])
    faces = [f for r in recs for f in r.faces]
    assert len(faces) == 4 and all(r.error is None for r in recs)
    assert all(f.output is not None and f.actions == ["translate:male2female"] for f in faces)  # once each
    for f in faces:
        torch.testing.assert_close(f.output, (1.0 - f.crop).clamp(0, 1))  # -x in [-1, 1] is 1 - x in [0, 1]
    assert gen.calls == [4, 2, 2] and tr.batch_size == 2
    assert "out of memory" in caplog.text and "batch size 2" in caplog.text


def test_a_single_face_that_does_not_fit_raises() -> None:
    class Stage:
        name, batch_size = "s", 4

    def fn(chunk):
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        for_chunks(Stage(), [1, 2, 3], fn)
    seen: list[list[int]] = []
    for_chunks(Stage(), list(range(5)), seen.append)
    assert seen == [[0, 1, 2, 3], [4]]
    with pytest.raises(ValueError):  # other errors are not retried
        for_chunks(Stage(), [1], lambda c: (_ for _ in ()).throw(ValueError("bad")))

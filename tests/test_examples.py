"""Every example script must at least parse its arguments (CI has no training data)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_help(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout


def test_custom_pipeline_example_runs(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setenv("FACESWAP_WEIGHTS", tiny_weights)
    out = tmp_path / "custom.png"
    r = subprocess.run([sys.executable, str(EXAMPLES[0].parent / "custom_pipeline.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000 and "1 face(s) swapped" in r.stdout

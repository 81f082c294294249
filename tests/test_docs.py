"""The README says what main does, and every example explains its flags."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_verify_threshold_is_the_recorded_one():
    from faceswap_pipeline.stages.verify import stored_threshold

    stated = re.findall(r"face probability\s*<?\s*([0-9]+\.[0-9]+)", README)
    assert len(stated) >= 2, stated  # the Detection paragraph and the flow diagram
    assert {float(v) for v in stated} == {stored_threshold()}
    assert "(HOG only)" not in README  # every detector goes through the verifier


def test_readme_promises_only_the_sr_models_that_ship():
    from faceswap_pipeline.api import sr_models

    shipped = sr_models()
    assert "srresnet.x4" in shipped
    if "srresnet.x2" not in shipped:
        assert "x2/x4" not in README and "x2 or x4" not in README


def test_readme_cascade_speed_claim_names_its_threads():
    detection = README[README.index("Detection: `--detector hog`") :].split("\n\n")[0]
    for sentence in re.split(r"(?<=[.;])\s", detection):
        if "faster" in sentence and "cascade" in sentence.lower():
            assert "thread" in sentence, sentence


EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def _help_entries(text: str) -> list[tuple[str, str]]:
    """(option, help) pairs of an argparse --help text."""
    entries: list[tuple[str, str]] = []
    in_section = False
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            in_section = line in ("options:", "optional arguments:", "positional arguments:")
            continue
        if not in_section or not line.strip():
            continue
        if re.match(r"^  \S", line):  # a new entry: "  --flag X    help" or "  --flag X" (help on the next line)
            m = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
            entries.append((m.group(1), m.group(2) or ""))
        elif entries:
            entries[-1] = (entries[-1][0], (entries[-1][1] + " " + line.strip()).strip())
    return entries


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_help_describes_every_flag_in_full_sentences(script):
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    body = r.stdout.split("\n\n")
    description = " ".join(body[1].split())
    assert description.endswith((".", ")", ":")) and not description.endswith(","), description
    entries = _help_entries(r.stdout)
    assert entries
    missing = [opt for opt, text in entries if not text]
    assert not missing, f"{script.name}: no help for {missing}"

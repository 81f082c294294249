"""End to end in a real browser: Debian's Chromium (headless, driven by Playwright) on the page of a
real ``faceswap-pipeline serve`` with the shipped models.

Uploads ``skimage.data.astronaut()`` through the page's file input, waits for the result, downloads
it with the page's own link and checks that the face changed and nothing far from it did; then
three bad files (not an image, empty, too large), each with its message in the page while the
good result stays; then the zip link. Every request the page makes must go to the server itself.

The screenshot goes to pytest's temporary folder, and to ``docs/web_page.png`` when that file is
missing or ``FACESWAP_UPDATE_SCREENSHOTS=1`` is set (so test runs do not keep rewriting it).

Playwright never downloads a browser here: it is pointed at ``/usr/bin/chromium`` (``.ci/run``
installs the Debian package). Without it the test is skipped, except in CI (``$CI``), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from faceswap_pipeline.stages.translate import DIRECTIONS
from faceswap_pipeline.web.testing import LocalServer, require
from faceswap_pipeline.weights import has_model

require("fastapi", "uvicorn", "httpx", "playwright")

import httpx  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "web_page.png"
LIMIT_MB = 2

if not os.path.isfile(CHROMIUM):
    if os.environ.get("CI"):
        pytest.fail(f"CI: Chromium not found at {CHROMIUM} (.ci/run installs Debian's chromium package)", pytrace=False)
    pytest.skip("needs Chromium (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with LocalServer("--device", "cpu", "--threads", "1", "--max-upload-mb", str(LIMIT_MB)) as srv:  # shipped weights
        yield srv
    assert srv.proc.returncode == 0, srv.log_text()


@pytest.fixture(scope="module")
def files(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("uploads")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    (d / "notes.png").write_text("a shopping list, not a photo\n")
    (d / "empty.jpg").write_bytes(b"")
    (d / "huge.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, (LIMIT_MB + 1) << 20, dtype=np.uint8).tobytes())
    return d


def test_page_swaps_the_astronaut_reports_bad_files_and_downloads(server, files, astronaut, tmp_path):
    seen: list[str] = []
    swap_status: list[int] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.on("request", lambda r: seen.append(r.url))
            page.on("response", lambda r: swap_status.append(r.status) if r.url.endswith("/api/swap") else None)
            page.goto(server.url)
            expect(page.locator("body")).to_have_attribute("data-ready", "1")
            expect(page.locator("#opt-direction")).to_have_value("auto-gender")
            for d in DIRECTIONS:  # every direction is offered; the ones without shipped weights as unavailable
                assert page.locator(f"#opt-direction option[value={d}]").is_disabled() != has_model(f"cyclegan.{d}"), d

            page.evaluate("""() => { window.states = [];  // every state a card passes through
                new MutationObserver((ms) => ms.forEach((m) => window.states.push(m.target.dataset.state)))
                    .observe(document.querySelector('#results'), {subtree: true, attributeFilter: ['data-state']}); }""")

            # 1. the astronaut, with the default options (auto-gender, HOG, SRResNet)
            page.set_input_files("#files", str(files / "astronaut.png"))
            card = page.locator(".card").nth(0)
            expect(card).to_have_attribute("data-state", "done", timeout=180_000)
            expect(card.locator(".status")).to_contain_text("done: 1 face")
            page.wait_for_function("() => [...document.querySelectorAll('.card .pair img')]"
                                   ".every(i => i.complete && i.naturalWidth === 512)")
            states = page.evaluate("window.states")
            assert "uploading" in states and states.index("processing") < states.index("done"), states  # its progress
            assert card.locator("svg rect.face").count() == 2  # outlined before and after
            row = card.locator("tbody tr")
            assert row.count() == 1
            cells = row.locator("td").all_inner_texts()
            assert cells[1] == "175, 76, 266, 167" and cells[2] == "female2male"  # the attribute network's choice
            assert "translate:female2male" in cells[7]

            with page.expect_download() as dl:
                card.locator("a.download").click()
            assert dl.value.suggested_filename == "astronaut_swapped.png"
            out = np.asarray(Image.open(dl.value.path()).convert("RGB"))
            assert out.shape == astronaut.shape
            face = (slice(86, 157), slice(185, 256))  # inside the detected box, 10 px in
            assert np.abs(out[face].astype(int) - astronaut[face]).mean() > 2
            far = np.ones(astronaut.shape[:2], bool)
            far[40:220, 140:300] = False  # the crop window (170, 71)-(271, 181) and a wide margin
            assert np.array_equal(out[far], astronaut[far])

            # 2. bad files: each gets its message, the good result stays
            page.set_input_files("#files", [str(files / n) for n in ("notes.png", "empty.jpg", "huge.jpg")])
            bad = {n: page.locator(".card").nth(i) for i, n in enumerate(("notes", "empty", "huge"), start=1)}
            for c in bad.values():
                expect(c).to_have_attribute("data-state", "error", timeout=60_000)
            expect(bad["notes"].locator(".error")).to_contain_text("notes.png: not an image")
            expect(bad["empty"].locator(".error")).to_contain_text("empty.jpg: empty file (0 bytes)")
            expect(bad["huge"].locator(".error")).to_contain_text(f"huge.jpg: file too large (3.0 MB); this server takes photos up to {LIMIT_MB}.0 MB")
            expect(page.locator("#progress")).to_have_text("1 of 4 done, 3 failed")
            expect(card).to_have_attribute("data-state", "done")
            assert swap_status == [200, 415]  # the empty and the too-large file are refused before uploading

            # 3. all results as one zip
            with page.expect_download() as dz:
                page.locator("#zip").click()
            with zipfile.ZipFile(dz.value.path()) as z:
                assert sorted(z.namelist()) == ["astronaut_swapped.png", "report.json"]
                assert z.read("astronaut_swapped.png") == Path(dl.value.path()).read_bytes()
                assert json.loads(z.read("report.json"))["results"][0]["faces"][0]["direction"] == "female2male"

            page.locator(".card").nth(0).scroll_into_view_if_needed()
            shot = tmp_path / "web_page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] >= 900
    if not DOCS_SCREENSHOT.exists() or os.environ.get("FACESWAP_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert seen and all(u.startswith(server.url) or u.startswith(("data:", "blob:")) for u in seen), seen  # no CDN


def test_the_real_server_answers_bad_uploads_with_4xx(server, files):
    """The same bad files sent straight to the API of the uvicorn server (the page checks two of them itself)."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for name, status, code in (("notes.png", 415, "not_an_image"), ("empty.jpg", 400, "empty_file"),
                                   ("huge.jpg", 413, "too_large")):
            r = c.post("/api/swap", files={"file": (name, (files / name).read_bytes())})
            assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        ok = c.post("/api/swap", files={"file": ("a.png", (files / "astronaut.png").read_bytes())}, data={"upscaler": "resize"})
        assert ok.status_code == 200 and ok.json()["n_faces"] == 1  # the connection cut after a 413 harms nothing

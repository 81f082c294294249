"""Load test of a real server (uvicorn, subprocess, loopback): 20 concurrent requests, twice.

Every request carries its own photo (the astronaut with a numbered patch far from the face), so
a lost, duplicated or mixed-up result shows. Tiny random generators (``tiny_weights``) keep it
fast; the real models are used in test_web_browser.py.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from faceswap_pipeline.web.testing import LocalServer, require

require("fastapi", "uvicorn", "httpx")

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

N = 20
MiB = 1 << 20


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def marked(astronaut: np.ndarray, i: int) -> np.ndarray:
    img = astronaut.copy()
    img[470:500, 10:40] = (i * 12, 255 - i * 12, 7 * i)  # far from the face at (175, 76)-(266, 167)
    return img


@pytest.mark.slow
def test_20_concurrent_requests_all_complete_correctly_with_bounded_memory(tiny_weights, astronaut):
    fields = {"direction": "male2female", "detector": "hog", "upscaler": "resize"}
    inputs = [marked(astronaut, i) for i in range(N)]
    with LocalServer("--weights-dir", tiny_weights, "--device", "cpu", "--threads", "1") as srv:
        with httpx.Client(base_url=srv.url, timeout=300) as c:
            ref = c.post("/api/swap", files={"file": ("ref.png", png(astronaut))}, data=fields).json()
            ref_out = np.asarray(Image.open(io.BytesIO(c.get(ref["urls"]["result"]).content)))
        x0, y0, x1, y1 = ref["faces"][0]["crop_box"]
        outside = np.ones(astronaut.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert not np.array_equal(ref_out[~outside], astronaut[~outside])
        mem_before = srv.memory()

        def wave() -> tuple[list[dict], list[float], float]:
            barrier = threading.Barrier(N)

            def one(i: int) -> tuple[dict, float]:
                with httpx.Client(base_url=srv.url, timeout=300) as c:
                    barrier.wait()  # all 20 are sent at once
                    t0 = time.perf_counter()
                    r = c.post("/api/swap", files={"file": (f"photo{i:02d}.png", png(inputs[i]))}, data=fields)
                    assert r.status_code == 200, r.text
                    rep = r.json()
                    rep["_bytes"] = c.get(rep["urls"]["result"]).content
                    return rep, time.perf_counter() - t0

            t0 = time.perf_counter()
            with ThreadPoolExecutor(N) as pool:
                done = list(pool.map(one, range(N)))
            return [d[0] for d in done], [d[1] for d in done], time.perf_counter() - t0

        for w in range(2):
            reps, latencies, wall = wave()
            assert len({r["id"] for r in reps}) == N  # none lost, none merged
            for i, rep in enumerate(reps):
                assert rep["filename"] == f"photo{i:02d}.png" and rep["n_faces"] == 1
                out = np.asarray(Image.open(io.BytesIO(rep["_bytes"])))
                assert np.array_equal(out[outside], inputs[i][outside])  # its own photo, untouched off the face
                assert np.array_equal(out[~outside], ref_out[~outside])  # the same swap as alone
            mem = srv.memory()
            print(f"wave {w}: {N} requests in {wall:.1f} s, latency max {max(latencies):.1f} s, "
                  f"server RSS {mem['rss'] / MiB:.0f} MiB (peak {mem['peak'] / MiB:.0f}, before {mem_before['rss'] / MiB:.0f})")
            if w == 0:
                mem_first = mem
        with httpx.Client(base_url=srv.url) as c:
            health = c.get("/api/health").json()
        assert health["pending"] == 0 and health["completed"] == 2 * N + 1 and health["failed"] == 0
        assert health["pipelines"] == ["auto-gender/hog/srresnet", "male2female/hog/resize"]
        # bounded: a wave of 20 costs little, and a second wave costs nothing more than the first
        assert mem_first["peak"] - mem_before["rss"] < 400 * MiB
        assert mem["rss"] - mem_first["rss"] < 64 * MiB
    assert srv.proc.returncode == 0, srv.log_text()

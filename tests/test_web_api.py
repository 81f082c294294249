"""The web server's JSON API in process (FastAPI's TestClient): limits, errors, formats, results, sharing.

Tiny random generators (``tiny_weights``) stand in for the shipped ones: these tests check the
plumbing, not the swap. The real models and the page itself are tested in test_web_browser.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import warnings
import zipfile

import numpy as np
import pytest

from faceswap_pipeline.web.testing import require

require("fastapi", "httpx")

with warnings.catch_warnings():  # newer Starlette asks for the httpx2 fork; httpx works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from faceswap_pipeline.web.app import create_app, is_loopback  # noqa: E402
from faceswap_pipeline.web.service import (  # noqa: E402
    MiB,
    ResultStore,
    StoredResult,
    SwapOptions,
    SwapService,
    WebConfig,
    WebError,
    clean_filename,
    output_suffix,
)

BASE = "http://127.0.0.1:8000"


def encode(rgb: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def service(tiny_weights, tmp_path_factory, hide_untrained_module):
    svc = SwapService(WebConfig(device="cpu", weights_dir=tiny_weights, max_upload_bytes=1 * MiB, max_pixels=600_000,
                                preload=False, temp_parent=str(tmp_path_factory.mktemp("web-temp"))))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def astronaut_png(astronaut) -> bytes:
    return encode(astronaut)


def post(client, data: bytes, name: str = "astronaut.png", **fields):
    fields.setdefault("direction", "male2female")
    fields.setdefault("upscaler", "resize")
    return client.post("/api/swap", files={"file": (name, data, "application/octet-stream")}, data=fields)


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == resp.status_code
    return body["error"]


# ------------------------------------------------------------------------------------- the API
def test_options_list_fields_choices_and_limits(client):
    opts = client.get("/api/options").json()
    dirs = {c["value"]: c for c in opts["fields"]["direction"]["choices"]}
    assert opts["fields"]["direction"]["default"] == "auto-gender" and dirs["auto-gender"]["available"]
    assert dirs["male2female"]["available"] and dirs["female2male"]["available"]
    assert not dirs["white2black"]["available"] and "cyclegan.white2black" in dirs["white2black"]["reason"]
    assert [c["value"] for c in opts["fields"]["detector"]["choices"]] == ["hog", "cascade"]
    assert {c["value"] for c in opts["fields"]["upscaler"]["choices"]} == {"srresnet", "resize"}
    st = opts["fields"]["strength"]
    assert st["adjustable"] is True and (st["min"], st["max"], st["default"]) == (0.0, 1.0, 1.0)
    assert opts["limits"]["max_upload_bytes"] == MiB and opts["limits"]["max_pixels"] == 600_000


def test_openapi_documents_the_api_and_no_cdn_doc_pages(client):
    spec = client.get("/api/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/swap", "/api/options", "/api/health", "/api/results.zip", "/api/results/{rid}",
            "/api/results/{rid}/preview/{which}", "/api/results/{rid}/report"} <= set(paths)
    swap = paths["/api/swap"]["post"]
    form = swap["requestBody"]["content"]["multipart/form-data"]["schema"]
    props = spec["components"]["schemas"][form["$ref"].rsplit("/", 1)[1]]["properties"] if "$ref" in form else form["properties"]
    assert {"file", "direction", "detector", "upscaler", "strength"} <= set(props)
    assert {"200", "413", "415", "422", "503"} <= set(swap["responses"])
    assert "FaceReport" in spec["components"]["schemas"]
    for page in ("/docs", "/redoc"):  # FastAPI's bundled doc pages load scripts from a CDN: not served
        assert client.get(page).status_code == 404


def test_page_and_assets_are_served_by_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    text = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text  # nothing external


def test_swap_returns_report_and_a_result_changed_only_around_the_face(client, astronaut, astronaut_png):
    from conftest import ASTRONAUT_FACE  # the HOG box of the face

    r = post(client, astronaut_png)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["filename"] == "astronaut.png" and rep["download_name"] == "astronaut_swapped.png"
    assert rep["options"] == {"direction": "male2female", "detector": "hog", "upscaler": "resize", "strength": 1.0}
    assert rep["input"]["width"] == 512 and rep["input"]["format"] == "PNG" and rep["output"]["changed"]
    assert rep["n_faces"] == 1
    face = rep["faces"][0]
    assert np.allclose(face["box"], ASTRONAUT_FACE, atol=3)
    assert face["direction"] == "male2female" and "translate:male2female" in face["actions"]
    assert 0.5 < face["attributes"]["face_prob"] <= 1.0
    assert rep["seconds"]["total"] > 0 and "translate" in rep["stage_s"]

    d = client.get(rep["urls"]["result"])
    assert d.status_code == 200 and d.headers["content-type"] == "image/png"
    assert 'attachment; filename="astronaut_swapped.png"' in d.headers["content-disposition"]
    out = decode(d.content)
    assert out.shape == astronaut.shape
    x0, y0, x1, y1 = (int(v) for v in face["box"])
    assert np.abs(out[y0:y1, x0:x1].astype(int) - astronaut[y0:y1, x0:x1]).mean() > 5  # the face changed
    cx0, cy0, cx1, cy1 = face["crop_box"]
    outside = np.ones(astronaut.shape[:2], bool)
    outside[max(cy0, 0):cy1, max(cx0, 0):cx1] = False
    assert np.array_equal(out[outside], astronaut[outside])  # nothing else did

    assert "inline" in client.get(rep["urls"]["inline"]).headers["content-disposition"]
    assert np.array_equal(decode(client.get(rep["urls"]["input_preview"]).content), astronaut)
    assert np.array_equal(decode(client.get(rep["urls"]["output_preview"]).content), out)
    assert client.get(rep["urls"]["report"]).json() == rep


def test_one_pipeline_per_setting_is_shared_by_requests(client, service, astronaut_png):
    for _ in range(2):
        assert post(client, astronaut_png, direction="female2male").status_code == 200
    assert service.loaded_pipelines().count("female2male/hog/resize") == 1
    opts = SwapOptions("female2male", "hog", "resize")
    assert service.pipeline(opts) is service.pipeline(opts)


def test_cascade_detector_and_srresnet_upscaler(client, astronaut_png):
    rep = post(client, astronaut_png, detector="cascade", upscaler="srresnet").json()
    assert rep["options"]["detector"] == "cascade" and rep["options"]["upscaler"] == "srresnet"
    assert rep["n_faces"] == 1 and rep["faces"][0]["direction"] == "male2female"


@pytest.mark.parametrize("case", ["not_an_image", "empty", "too_large", "too_many_pixels", "truncated"])
def test_bad_uploads_get_4xx_with_a_clear_message(client, service, astronaut_png, case):
    rng = np.random.default_rng(0)
    data, name, status = {
        "not_an_image": (b"just some text, not a photo\n", "notes.jpg", 415),
        "empty": (b"", "empty.png", 400),
        "too_large": (rng.integers(0, 256, int(1.5 * MiB), dtype=np.uint8).tobytes(), "big.png", 413),
        "too_many_pixels": (encode(np.zeros((700, 1000, 3), np.uint8)), "wide.png", 413),
        "truncated": (astronaut_png[: len(astronaut_png) // 2], "cut.png", 422),
    }[case]
    r = post(client, data, name)
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["code"] == {"not_an_image": "not_an_image", "empty": "empty_file", "too_large": "too_large",
                           "too_many_pixels": "too_many_pixels", "truncated": "unreadable_image"}[case]
    if case != "too_large":  # refused from Content-Length, before the file name is parsed
        assert err["message"].startswith(name + ":")
    assert {"too_large": "1 MB", "too_many_pixels": "1000x700", "empty": "0 bytes"}.get(case, "") in err["message"]
    assert str(service.root) not in err["message"]  # no server path in messages


def test_upload_without_content_length_is_cut_off_at_the_limit(client):
    boundary = "XyZ"

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n\r\n'.encode()
        for _ in range(40):  # 2.5 MiB in 64 KiB chunks, no Content-Length (chunked)
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/swap", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413 and error_of(r)["code"] == "too_large"


@pytest.mark.parametrize("fields, needle", [
    ({"direction": "sideways"}, "unknown direction 'sideways'"),
    ({"direction": "white2black"}, "no trained generator yet (cyclegan.white2black)"),
    ({"detector": "eyes"}, "choose one of hog, cascade"),
    ({"strength": "1.5"}, "strength must be between 0 and 1"),
    ({"strength": "nan"}, "strength must be between 0 and 1"),
    ({"strength": "lots"}, "strength"),
    ({"blur": "1"}, "unknown field(s) blur"),
])
def test_bad_options_get_422(client, astronaut_png, fields, needle):
    r = post(client, astronaut_png, **fields)
    assert r.status_code == 422 and needle in error_of(r)["message"], r.text


def test_strength_zero_returns_the_photo_unchanged_and_half_is_recorded(client, astronaut_png):
    r = post(client, astronaut_png, strength="0")
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["options"]["strength"] == 0.0 and not rep["output"]["changed"]
    assert rep["faces"][0]["strength"] == 0.0, rep["faces"]
    half = post(client, astronaut_png, strength="0.5").json()
    assert half["output"]["changed"] and half["faces"][0]["strength"] == 0.5
    full = post(client, astronaut_png).json()  # the shared pipeline is back at strength 1
    assert full["faces"][0]["strength"] == 1.0


def test_missing_file_field(client):
    r = client.post("/api/swap", data={"direction": "male2female"}, files={"other": ("a.txt", b"x")})
    assert r.status_code == 422 and "file: missing" in error_of(r)["message"]


def test_host_and_cross_origin_checks(client, astronaut_png):
    assert client.get("/api/health", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    assert client.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200
    r = client.post("/api/swap", files={"file": ("a.png", astronaut_png)}, headers={"origin": "http://attacker.example"})
    assert r.status_code == 403 and error_of(r)["code"] == "cross_origin"
    assert client.get("/api/health", headers={"origin": "http://attacker.example"}).status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.3.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


def test_exif_orientation_applied_and_jpeg_kept(client, astronaut):
    from faceswap_pipeline.io import read_image

    upright = astronaut[:, :400]  # 512 high, 400 wide
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # orientation 6: rotate 90 deg clockwise to show
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    rep = post(client, data, "phone.JPG").json()
    assert rep["input"]["orientation"] == 6 and (rep["input"]["width"], rep["input"]["height"]) == (400, 512)
    assert rep["n_faces"] == 1 and rep["download_name"] == "phone_swapped.jpg"
    r = client.get(rep["urls"]["result"])
    assert r.headers["content-type"] == "image/jpeg"
    path = client.app.state.service.root / "check.jpg"
    path.write_bytes(r.content)
    back = read_image(path)
    path.unlink()
    assert back.format == "JPEG" and back.orientation == 1 and back.rgb.shape == (512, 400, 3)


def test_photo_without_faces_comes_back_byte_identical(client):
    rng = np.random.default_rng(1)
    data = encode(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    rep = post(client, data, "noise.png").json()
    assert rep["n_faces"] == 0 and rep["output"]["changed"] is False
    assert client.get(rep["urls"]["result"]).content == data


def test_greyscale_photo_stays_grey(client, astronaut):
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    rep = post(client, encode(grey), "grey.png").json()
    assert rep["input"]["mode"] == "L" and rep["output"]["mode"] == "L"
    with Image.open(io.BytesIO(client.get(rep["urls"]["result"]).content)) as im:
        assert im.mode == "L"


def test_zip_of_results_and_delete(client, astronaut_png):
    ids = [post(client, astronaut_png).json()["id"] for _ in range(2)]
    r = client.get(f"/api/results.zip?ids={','.join(ids)}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(z.namelist()) == ["astronaut_swapped (2).png", "astronaut_swapped.png", "report.json"]
        report = json.loads(z.read("report.json"))
        assert [x["id"] for x in report["results"]] == ids
        assert z.read("astronaut_swapped.png") == client.get(f"/api/results/{ids[0]}").content
    assert client.delete(f"/api/results/{ids[0]}").status_code == 204
    assert client.get(f"/api/results/{ids[0]}").status_code == 404
    r = client.get(f"/api/results.zip?ids={','.join(ids)}")
    assert r.status_code == 404 and ids[0] in error_of(r)["message"]
    assert client.get("/api/results/../../etc/passwd").status_code == 404


# ------------------------------------------------------------------------------------- the service
def test_full_queue_answers_busy_and_files_stay_in_the_temp_folder(tiny_weights, tmp_path, astronaut_png):
    svc = SwapService(WebConfig(device="cpu", weights_dir=tiny_weights, max_pending=1, preload=False, temp_parent=str(tmp_path)))
    gate = threading.Event()
    svc._executor.submit(gate.wait)  # the worker is busy until the gate opens
    opts = SwapOptions("male2female", "hog", "resize")

    async def two_requests():
        first = asyncio.ensure_future(svc.swap(io.BytesIO(astronaut_png), "a.png", opts))
        await asyncio.sleep(0.05)
        with pytest.raises(WebError) as busy:
            await svc.swap(io.BytesIO(astronaut_png), "b.png", opts)
        gate.set()
        return await first, busy.value

    try:
        res, busy = asyncio.run(two_requests())
        assert busy.status == 503 and busy.code == "busy" and busy.retry_after
        assert svc.pending == 0 and svc.completed == 1
        files = sorted(p.relative_to(svc.root).as_posix() for p in svc.root.rglob("*") if p.is_file())
        assert files == [f"{res.id}/input.png", f"{res.id}/output.png", f"{res.id}/result.png"]  # the upload is gone
        assert [p.parent for p in tmp_path.iterdir()] == [tmp_path] and list(tmp_path.iterdir()) == [svc.root]
    finally:
        gate.set()
        svc.close()
    assert not svc.root.exists() and list(tmp_path.iterdir()) == []


def test_result_store_drops_oldest_beyond_its_limits(tmp_path):
    store = ResultStore(max_results=2, max_bytes=250)

    def make(i: int, nbytes: int) -> StoredResult:
        folder = tmp_path / f"{i:032x}"
        folder.mkdir()
        return StoredResult(f"{i:032x}", folder, folder / "r.png", "r.png", "image/png", folder / "i.png", folder / "o.png", {}, nbytes)

    results = [make(i, 100) for i in range(3)]
    for r in results:
        store.add(r)
    assert len(store) == 2 and not results[0].folder.exists() and results[2].folder.exists()
    with pytest.raises(WebError) as e:
        store.get(results[0].id)
    assert e.value.status == 404
    store.add(make(3, 200))  # over max_bytes: only the newest stays
    assert len(store) == 1 and store.get(f"{3:032x}")


def test_option_and_name_helpers():
    assert SwapOptions.from_fields({}) == SwapOptions("auto-gender", "hog", "srresnet", 1.0)
    assert SwapOptions.from_fields({"strength": "1"}).key() == ("auto-gender", "hog", "srresnet")
    assert clean_filename("C:\\Users\\me\\IMG 1.jpg") == "IMG 1.jpg" and clean_filename("../../x\x00y.png") == "xy.png"
    assert clean_filename("") == "image" and clean_filename("..") == "image"
    assert output_suffix("a.JPEG", "JPEG") == ".jpeg" and output_suffix("a.png", "JPEG") == ".jpg"
    assert output_suffix("a", "PPM") == ".png"
    with pytest.raises(ValueError):
        WebConfig(max_pixels=0)


def test_cli_serve_reports_a_port_in_use(capsys):
    import socket

    from faceswap_pipeline.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port), "--device", "cpu"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_cli_serve_arguments():
    from faceswap_pipeline.cli import build_parser

    a = build_parser().parse_args(["serve"])
    assert (a.host, a.port, a.max_upload_mb, a.max_megapixels) == ("127.0.0.1", 8000, 50, 40)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--port", "70000"])
    assert os.path.isfile(os.path.join(os.path.dirname(create_app.__code__.co_filename), "static", "index.html"))

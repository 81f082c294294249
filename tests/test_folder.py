"""The folder runner: mirrored outputs, per-file error isolation, the JSON report, resume."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceswap_pipeline.folder import FolderReport, ItemResult, load_report, run_folder, to_jsonable
from faceswap_pipeline.io import OUTPUT_MARKER, LoadedImage, read_image


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    from skimage import data

    return data.astronaut()[::2, ::2].copy()  # (256, 256, 3) uint8 RGB, keeps the tests fast


def invert(items: list[LoadedImage]) -> list[ItemResult]:
    """A real, trivial processing step: invert colours, report the mean."""
    return [ItemResult(255 - it.rgb, {"mean": np.float32(it.rgb.mean()), "shape": it.rgb.shape}) for it in items]


def exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x010F] = "TestCam"
    ex[0x0112] = orientation
    return ex.tobytes()


def make_tree(root: Path, img: np.ndarray) -> dict[str, str]:
    """A photo folder with every kind of file; returns {relative path: expected status}."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    Image.fromarray(img).save(root / "a.jpg", quality=88, exif=exif(6))
    Image.fromarray(np.dstack([img, img[..., 0]])).save(root / "sub" / "rgba.PNG")
    Image.fromarray(img[..., 1]).save(root / "sub" / "deeper" / "grey.png")
    Image.fromarray(img[..., 2].astype(np.uint16) * 257).save(root / "sub" / "g16.png")
    Image.fromarray(img).convert("CMYK").save(root / "cmyk.jpeg")
    Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "pal.png")
    Image.fromarray(img).save(root / "anim.gif")  # GIF is not walked by default
    Image.fromarray(img).save(root / "b.webp")
    (root / "empty.jpg").write_bytes(b"")
    full = (root / "a.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "text.jpg").write_text("not an image")
    (root / "notes.txt").write_text("ignored")
    (root / "a.jpg.txt").write_text("ignored")
    Image.fromarray(img).save(root / ".thumbs" / "hidden.jpg")
    Image.fromarray(img).save(root / ".hidden.png")
    return {
        "a.jpg": "ok",
        "b.webp": "ok",
        "cmyk.jpeg": "ok",
        "empty.jpg": "error",
        "pal.png": "ok",
        "sub/deeper/grey.png": "ok",
        "sub/g16.png": "ok",
        "sub/rgba.PNG": "ok",
        "text.jpg": "error",
        "truncated.jpg": "error",
    }


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def statuses(report: FolderReport) -> dict[str, str]:
    return {it.input: it.status for it in report.items}


@pytest.mark.parametrize("background_writes", [True, False])
def test_folder_run_mirrors_tree_and_reports_every_file(tmp_path, astro, background_writes):
    src, out, rep = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    expected = make_tree(src, astro)
    before = hashes(src)
    report = run_folder(
        src, out, invert, batch_size=3, report_path=rep, progress=False, background_writes=background_writes
    )

    assert statuses(report) == expected
    assert report.n_ok == 7 and report.n_failed == 3 and report.n_skipped == 0
    assert report.exit_code == 1 and report.complete
    assert hashes(src) == before  # inputs untouched
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != OUTPUT_MARKER)
    assert written == sorted(k for k, v in expected.items() if v == "ok")

    # The JSON file is the same report, valid, and accounts for every input.
    data = json.loads(rep.read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["complete"] is True and data["version"] == 1
    assert data["summary"]["total"] == 10 and data["summary"]["error"] == 3 and data["summary"]["ok"] == 7
    by_input = {e["input"]: e for e in data["items"]}
    assert set(by_input) == set(expected)
    assert "empty file" in by_input["empty.jpg"]["error"]
    assert "truncated" in by_input["truncated.jpg"]["error"]
    assert "not a recognised image" in by_input["text.jpg"]["error"]
    ok = by_input["a.jpg"]
    assert ok["error"] is None and ok["output"] == "a.jpg"
    assert set(ok["timings"]) == {"read_s", "process_s", "write_s"}
    assert ok["info"]["image"]["orientation"] == 6 and ok["info"]["shape"] == [256, 256, 3]
    assert isinstance(ok["info"]["mean"], float)  # numpy float32 -> a JSON number, of the decoded input
    assert ok["info"]["mean"] == pytest.approx(float(read_image(src / "a.jpg").rgb.mean()), rel=1e-6)
    assert by_input["empty.jpg"]["output"] is None

    # Outputs: the processed pixels, with the input's format, quality, EXIF and alpha.
    a_in, a_out = read_image(src / "a.jpg"), read_image(out / "a.jpg")
    assert a_out.format == "JPEG" and a_out.quality == 88 and a_out.orientation == 1
    assert np.abs(a_out.rgb.astype(int) - (255 - a_in.rgb)).mean() < 3
    ex = Image.Exif()
    ex.load(a_out.exif)
    assert ex[0x010F] == "TestCam"
    rgba = read_image(out / "sub" / "rgba.PNG")
    np.testing.assert_array_equal(rgba.alpha, astro[..., 0])
    np.testing.assert_array_equal(rgba.rgb, 255 - astro)
    assert read_image(out / "b.webp").format == "WEBP"
    assert read_image(out / "pal.png").format == "PNG"


def test_resume_skips_done_files_and_overwrite_redoes_them(tmp_path, astro):
    src, out, rep = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    expected = make_tree(src, astro)
    run_folder(src, out, invert, report_path=rep, progress=False)
    outputs = [p for p in out.rglob("*") if p.is_file()]
    for p in outputs:
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    calls: list[int] = []

    def counting(items):
        calls.append(len(items))
        return invert(items)

    report = run_folder(src, out, counting, report_path=rep, progress=False)
    assert calls == []  # nothing left to process: the bad files fail at reading again
    assert statuses(report) == {k: ("skipped" if v == "ok" else v) for k, v in expected.items()}
    assert all(p.stat().st_mtime_ns == 1_000_000_000 for p in outputs)  # not rewritten
    skipped = next(it for it in report.items if it.input == "a.jpg")
    assert skipped.info["image"]["format"] == "JPEG"  # info carried from the previous report
    assert report.exit_code == 1  # the bad files still fail

    # a new input is picked up, the rest stay skipped
    Image.fromarray(astro).save(src / "new.png")
    report = run_folder(src, out, counting, report_path=rep, progress=False)
    assert calls == [1] and statuses(report)["new.png"] == "ok"

    report = run_folder(src, out, counting, report_path=rep, overwrite=True, progress=False)
    assert report.n_skipped == 0 and report.n_ok == 8
    assert all(p.stat().st_mtime_ns != 1_000_000_000 for p in outputs)


def test_exit_code_zero_when_everything_succeeds(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(astro, i * 10, axis=1)).save(src / f"{i}.png")
    report = run_folder(src, tmp_path / "out", invert, progress=True)  # no TTY under pytest: bar disabled
    assert report.exit_code == 0 and report.n_ok == 3
    assert report.to_dict()["summary"]["images_per_s"] > 0


def test_one_bad_image_in_a_batch_does_not_fail_its_neighbours(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        Image.fromarray(astro[: 200 + i]).save(src / f"{i}.png")
    calls: list[list[int]] = []

    def fragile(items):
        calls.append([it.height for it in items])
        if any(it.height == 202 for it in items):
            raise RuntimeError("cannot process an image 202 pixels high")
        return invert(items)

    report = run_folder(src, tmp_path / "out", fragile, batch_size=4, report_path=tmp_path / "r.json", progress=False)
    assert statuses(report) == {"0.png": "ok", "1.png": "ok", "2.png": "error", "3.png": "ok", "4.png": "ok"}
    assert calls == [[200, 201, 202, 203], [200], [201], [202], [203], [204]]
    bad = next(it for it in report.items if it.status == "error")
    assert bad.error == "RuntimeError: cannot process an image 202 pixels high"
    assert "fragile" in bad.traceback
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_MARKER, "0.png", "1.png", "3.png", "4.png"]
    assert report.exit_code == 1


@pytest.mark.parametrize("background_writes", [True, False])
def test_per_item_exceptions_and_bad_results(tmp_path, astro, background_writes):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(astro).save(src / f"{i}.png")

    def mixed(items):
        return [ValueError("no face"), ItemResult(None, {}), "oops", ItemResult(np.zeros((4, 4, 7), np.uint8))][
            : len(items)
        ]

    report = run_folder(src, tmp_path / "out", mixed, batch_size=4, progress=False, background_writes=background_writes)
    st = [(it.input, it.status, it.error) for it in report.items]
    assert st[0] == ("0.png", "error", "ValueError: no face")
    assert st[1] == ("1.png", "ok", None)
    assert st[2][1] == "error" and "not ItemResult" in st[2][2]
    assert st[3][1] == "error" and "shape" in st[3][2]  # a bad output array is a write error of that file
    assert [p.name for p in (tmp_path / "out").glob(".*")] == [OUTPUT_MARKER]  # no temp files left


def test_wrong_number_of_results_is_an_error(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(astro).save(src / f"{i}.png")
    report = run_folder(src, tmp_path / "out", lambda items: [], batch_size=2, progress=False)
    assert [it.status for it in report.items] == ["error", "error"]
    assert "returned 0 results for 1 images" in report.items[0].error


def test_unchanged_output_copies_the_input_bytes(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astro).save(src / "a.jpg", quality=70, exif=exif(8))
    report = run_folder(
        src, tmp_path / "out", lambda items: [ItemResult(None, {"faces": []}) for _ in items], progress=False
    )
    assert report.n_ok == 1
    assert (tmp_path / "out" / "a.jpg").read_bytes() == (src / "a.jpg").read_bytes()
    # to another format: re-encoded, upright
    report = run_folder(
        src, tmp_path / "png", lambda items: [ItemResult() for _ in items], output_suffix=".png", progress=False
    )
    assert report.items[0].output == "a.png"
    np.testing.assert_array_equal(read_image(tmp_path / "png" / "a.png").rgb, read_image(src / "a.jpg").rgb)


def test_output_suffix_and_collisions(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astro).save(src / "x.jpg")
    Image.fromarray(astro).save(src / "x.png")
    Image.fromarray(astro).save(src / "y.jpg")
    report = run_folder(src, tmp_path / "out", invert, output_suffix="webp", progress=False)
    st = {it.input: (it.status, it.output) for it in report.items}
    assert st["x.jpg"] == ("ok", "x.webp") and st["y.jpg"] == ("ok", "y.webp")
    assert st["x.png"][0] == "error" and "also the output of 'x.jpg'" in report.items[1].error
    assert read_image(tmp_path / "out" / "x.webp").format == "WEBP"
    with pytest.raises(ValueError, match="suffix"):
        run_folder(src, tmp_path / "out2", invert, output_suffix=".txt", progress=False)


def test_detect_style_run_resumes_from_its_report(tmp_path, astro):
    src, rep = tmp_path / "in", tmp_path / "detections.json"
    src.mkdir()
    for i in range(3):
        Image.fromarray(astro).save(src / f"{i}.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    seen: list[str] = []

    def detect(items):
        seen.extend(it.path.name for it in items)
        return [ItemResult(None, {"faces": [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.9}]}) for _ in items]

    report = run_folder(src, None, detect, write_outputs=False, report_path=rep, progress=False)
    assert seen == ["0.png", "1.png", "2.png"] and report.n_ok == 3 and report.n_failed == 1
    assert all(it.output is None for it in report.items)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections.json", "in"]  # nothing else written

    seen.clear()
    os.utime(src / "1.png", ns=(5_000_000_000, 5_000_000_000))  # changed input: redone
    report = run_folder(src, None, detect, write_outputs=False, report_path=rep, progress=False)
    assert seen == ["1.png"]
    assert statuses(report) == {"0.png": "skipped", "1.png": "ok", "2.png": "skipped", "bad.png": "error"}
    assert report.items[0].info["faces"][0]["box"] == [1.0, 2.0, 3.0, 4.0]

    seen.clear()
    run_folder(src, None, detect, write_outputs=False, report_path=rep, progress=False, overwrite=True)
    assert seen == ["0.png", "1.png", "2.png"]
    # a corrupt previous report is ignored (everything redone), not fatal
    rep.write_text("{ not json")
    seen.clear()
    run_folder(src, None, detect, write_outputs=False, report_path=rep, progress=False)
    assert len(seen) == 3 and load_report(rep)["complete"] is True


def test_interrupted_run_leaves_a_valid_report_and_resumes(tmp_path, astro):
    src, out, rep = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    src.mkdir()
    for i in range(6):
        Image.fromarray(astro).save(src / f"{i}.png")
    n = [0]

    def interrupted(items):
        n[0] += 1
        if n[0] == 2:
            raise KeyboardInterrupt
        return invert(items)

    with pytest.raises(KeyboardInterrupt):
        run_folder(src, out, interrupted, batch_size=2, report_path=rep, progress=False)
    data = json.loads(rep.read_text())
    assert data["complete"] is False and data["finished"] is None
    assert [e["status"] for e in data["items"]] == ["ok", "ok", "pending", "pending", "pending", "pending"]
    assert data["summary"]["pending"] == 4
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "0.png", "1.png"]

    report = run_folder(src, out, invert, batch_size=2, report_path=rep, progress=False)
    assert [it.status for it in report.items] == ["skipped"] * 2 + ["ok"] * 4
    assert report.exit_code == 0


def test_folder_safety_rules(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astro).save(src / "a.png")
    with pytest.raises(ValueError, match="is the input folder"):
        run_folder(src, src, invert, progress=False)
    with pytest.raises(ValueError, match="is the input folder"):
        run_folder(src, tmp_path / "in" / ".." / "in", invert, progress=False)
    with pytest.raises(ValueError, match="inside the output folder"):
        run_folder(src, tmp_path, invert, progress=False)
    with pytest.raises(ValueError, match="out_dir is required"):
        run_folder(src, None, invert, progress=False)
    with pytest.raises(FileNotFoundError):
        run_folder(tmp_path / "missing", tmp_path / "out", invert, progress=False)
    # an output folder inside the input folder is allowed and never walked
    before = hashes(src)
    r1 = run_folder(src, src / "processed", invert, progress=False)
    r2 = run_folder(src, src / "processed", invert, progress=False, overwrite=True)
    assert [it.input for it in r1.items] == [it.input for it in r2.items] == ["a.png"]
    assert hashes(src)["a.png"] == before["a.png"]
    # a single file as input
    r3 = run_folder(src / "a.png", tmp_path / "single", invert, progress=False)
    assert r3.n_ok == 1 and (tmp_path / "single" / "a.png").is_file()


def test_large_images_are_batched_by_pixels(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        Image.fromarray(astro).save(src / f"{i}.png")  # 65,536 pixels each
    sizes: list[int] = []

    def record(items):
        sizes.append(len(items))
        return invert(items)

    report = run_folder(src, tmp_path / "out", record, batch_size=8, max_batch_pixels=150_000, progress=False)
    assert report.n_ok == 5 and sizes == [2, 2, 1]


def test_upscaled_outputs_keep_resized_alpha(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.dstack([astro, astro[..., 1]])).save(src / "a.png")

    def upscale2(items):
        return [ItemResult(np.repeat(np.repeat(it.rgb, 2, 0), 2, 1), {"scale": 2}) for it in items]

    run_folder(src, tmp_path / "out", upscale2, progress=False)
    out = read_image(tmp_path / "out" / "a.png")
    assert out.rgb.shape == (512, 512, 3) and out.alpha.shape == (512, 512)


def test_empty_folder(tmp_path):
    (tmp_path / "in").mkdir()
    report = run_folder(tmp_path / "in", tmp_path / "out", invert, report_path=tmp_path / "r.json", progress=False)
    assert report.items == [] and report.exit_code == 0
    assert load_report(tmp_path / "r.json")["summary"]["total"] == 0


def test_to_jsonable():
    class WithDict:
        def to_dict(self):
            return {"a": np.int16(3)}

    assert to_jsonable({"x": np.arange(3), "f": float("inf"), "t": (1, np.float32(0.5)), "p": Path("a/b"), "o": WithDict()}) == {
        "x": [0, 1, 2], "f": None, "t": [1, 0.5], "p": "a/b", "o": {"a": 3},
    }  # fmt: skip


def test_read_ahead_respects_the_pixel_budget(tmp_path, astro):
    from faceswap_pipeline.folder.readahead import ReadAhead

    for i in range(8):
        Image.fromarray(astro).save(tmp_path / f"{i}.png")  # 65,536 pixels each
    jobs = [(i, tmp_path / f"{i}.png", None) for i in range(8)]
    reader = ReadAhead(jobs, num_readers=2, max_pixels=None, pixel_budget=150_000, max_queued=10)
    try:
        got = []
        while (item := reader.next()) is not None:
            got.append(item)
        # reads stop once decoded, unreleased images hold the budget (plus what was already reading)
        assert 3 <= len(got) <= 4 and not reader.exhausted
        reader.release(65_536 * len(got))
        while (item := reader.next()) is not None:
            got.append(item)
            reader.release(65_536)
        assert [g[0] for g in got] == list(range(8)) and reader.exhausted
        assert all(isinstance(g[2], LoadedImage) for g in got)
    finally:
        reader.close()


def test_unusual_file_names_and_foreign_report(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    names = ["фото ü.jpg", "with space.png", os.fsdecode(b"bad\xffname.png")]
    for n in names:
        Image.fromarray(astro).save(src / n, format="JPEG" if n.endswith(".jpg") else "PNG")
    rep = tmp_path / "r.json"
    report = run_folder(src, tmp_path / "out", invert, report_path=rep, progress=False)
    assert report.n_ok == 3
    data = json.loads(rep.read_text(encoding="ascii"))  # ASCII JSON, undecodable bytes escaped
    assert sorted(e["input"] for e in data["items"]) == sorted(names)
    # a report written for another input folder is not used to skip anything
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(astro).save(other / "with space.png")
    seen = []
    run_folder(
        other,
        None,
        lambda items: seen.extend(items) or [ItemResult() for _ in items],
        write_outputs=False,
        report_path=rep,
        progress=False,
    )
    assert len(seen) == 1


def test_webp_lossless_kept(tmp_path, astro):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astro).save(src / "l.webp", lossless=True)
    Image.fromarray(astro).save(src / "q.webp", quality=80)
    run_folder(src, tmp_path / "out", invert, progress=False)
    assert read_image(src / "l.webp").webp_lossless is True and read_image(src / "q.webp").webp_lossless is False
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "l.webp").rgb, 255 - astro)
    assert read_image(tmp_path / "out" / "q.webp").webp_lossless is False


def test_progress_bar_path(tmp_path, astro, monkeypatch, capsys):
    import faceswap_pipeline.folder.runner as runner

    monkeypatch.setattr(runner, "should_show", lambda progress: progress)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(astro[:64, :64]).save(src / f"{i}.png")
    (src / "bad.png").write_bytes(b"")
    report = run_folder(src, tmp_path / "out", invert, progress=True)
    assert report.n_ok == 3 and report.n_failed == 1
    assert "4/4" in capsys.readouterr().err

import json

import pytest
import torch

from faceswap_pipeline.archs.cyclegan import ResnetGenerator
from faceswap_pipeline.weights import (
    WeightsError,
    dequantize_state_dict,
    load_model,
    quantize_state_dict,
    register_weights,
    save_weights,
    verify,
)


def _save(tmp_path, storage="fp32", seed=0):
    torch.manual_seed(seed)
    g = ResnetGenerator(ngf=4, n_blocks=1).eval()
    kw = {"ngf": 4, "n_blocks": 1}
    sha = save_weights(g, tmp_path / "g.safetensors", arch="cyclegan_resnet", kwargs=kw, storage=storage)
    register_weights("cyclegan.test", {"file": "g.safetensors", "sha256": sha, "arch": "cyclegan_resnet", "kwargs": kw, "storage": storage}, tmp_path)
    return g


def test_round_trip_fp32_gives_identical_outputs(tmp_path):
    g = _save(tmp_path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    g2 = load_model("cyclegan.test", tmp_path)
    with torch.no_grad():
        assert torch.equal(g(x), g2(x))
    assert not g2.training


def test_int8_storage_is_close_and_smaller(tmp_path):
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=2).eval()
    sd = g.state_dict()
    q = quantize_state_dict(sd, "int8")
    assert any(v.dtype == torch.int8 for v in q.values())
    deq = dequantize_state_dict(q)
    assert deq.keys() == sd.keys()
    for k in sd:
        err = (deq[k] - sd[k]).abs().max()
        assert err <= sd[k].abs().max() / 127 * 0.5 + 1e-7, k  # half a quantisation step per channel
    g2 = ResnetGenerator(ngf=8, n_blocks=2).eval()
    g2.load_state_dict(deq)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (g(x) - g2(x)).abs().mean() < 0.02


def test_int4_storage_groups_bits_and_round_trip(tmp_path, monkeypatch):
    import faceswap_pipeline.weights as w

    monkeypatch.setattr(w, "INT4_MIN_NUMEL", 2000)  # the tiny net's big layers go 4-bit, the first / last stay int8
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=2).eval()
    sd = g.state_dict()
    q = quantize_state_dict(sd, "int4")
    four = [k[: -len(".__int4")] for k in q if k.endswith(".__int4")]
    eight = [k[: -len(".__int8")] for k in q if k.endswith(".__int8")]
    assert four and eight and not set(four) & set(eight)
    for k in four:
        assert sd[k].numel() >= 2000
        n = sd[k].numel()
        groups = -(-(n // sd[k].shape[0]) // w.INT4_GROUP) * sd[k].shape[0]
        assert q[k + ".__int4"].dtype == torch.uint8 and q[k + ".__int4"].numel() == groups * w.INT4_GROUP // 2  # two codes a byte
        assert q[k + ".__scale4"].dtype == torch.float16 and q[k + ".__scale4"].numel() == groups
        codes = torch.cat([q[k + ".__int4"] & 15, q[k + ".__int4"] >> 4])
        assert int(codes.min()) >= 1 and int(codes.max()) <= 15  # q + 8, q in [-7, 7]
    for k in eight:
        assert sd[k].numel() < 2000 and sd[k].dim() >= 2
    deq = dequantize_state_dict(q)
    assert deq.keys() == sd.keys() and all(deq[k].shape == sd[k].shape for k in sd)
    for k in four:  # per group: at most the clipped tail (scales >= 0.7 amax / 7) or half a step
        rows = [t.reshape(t.shape[0], -1) for t in (sd[k], deq[k])]
        pad = (-rows[0].shape[1]) % w.INT4_GROUP  # rows are zero-padded to whole groups
        flat, got = (torch.nn.functional.pad(r, (0, pad)).reshape(r.shape[0], -1, w.INT4_GROUP) for r in rows)
        amax = flat.abs().amax(dim=2)
        assert ((got - flat).abs().amax(dim=2) <= 0.3 * amax * 1.001 + 1e-6).all(), k
        assert (got - flat).norm() < 0.15 * flat.norm(), k
    for k in sd:
        if sd[k].dim() == 1:
            assert torch.equal(deq[k], sd[k])
    # through the file format: smaller than int8, loads, outputs close to the float net
    sizes = {}
    for storage in ("int8", "int4"):
        sha = save_weights(g, tmp_path / f"{storage}.safetensors", arch="cyclegan_resnet", kwargs={"ngf": 8, "n_blocks": 2}, storage=storage)
        register_weights(f"cyclegan.{storage}", {"file": f"{storage}.safetensors", "sha256": sha, "arch": "cyclegan_resnet",
                                                 "kwargs": {"ngf": 8, "n_blocks": 2}, "storage": storage}, tmp_path)
        sizes[storage] = (tmp_path / f"{storage}.safetensors").stat().st_size
    assert sizes["int4"] < 0.8 * sizes["int8"]
    g4 = load_model("cyclegan.int4", tmp_path)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (g(x) - g4(x)).abs().mean() < 0.05


def test_unknown_storage_is_refused():
    with pytest.raises(ValueError, match="storage must be one of"):
        quantize_state_dict({"w": torch.zeros(2, 2)}, "int3")


def test_corrupt_file_is_rejected_naming_file_and_hash(tmp_path):
    _save(tmp_path)
    p = tmp_path / "g.safetensors"
    data = bytearray(p.read_bytes())
    data[-10] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"corrupt: .*g\.safetensors has sha256 [0-9a-f]{64}, manifest expects"):
        load_model("cyclegan.test", tmp_path)


def test_missing_file_and_unknown_model_are_clear_errors(tmp_path):
    _save(tmp_path)
    (tmp_path / "g.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing"):
        verify("cyclegan.test", tmp_path)
    with pytest.raises(WeightsError, match=r"no trained weights for 'cyclegan.nope'.*has: cyclegan.test\)"):
        load_model("cyclegan.nope", tmp_path)


def test_wrong_architecture_kwargs_are_rejected(tmp_path):
    _save(tmp_path)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["models"]["cyclegan.test"]["kwargs"] = {"ngf": 8, "n_blocks": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsError, match="do not fit"):
        load_model("cyclegan.test", tmp_path)


def test_files_have_no_pickle(tmp_path):
    _save(tmp_path)
    head = (tmp_path / "g.safetensors").read_bytes()[:8]
    n = int.from_bytes(head, "little")
    header = json.loads((tmp_path / "g.safetensors").read_bytes()[8 : 8 + n])
    assert header["__metadata__"]["arch"] == "cyclegan_resnet"


def test_own_folder_overrides_shipped_models_and_falls_back_for_the_rest(tmp_path):
    from faceswap_pipeline.weights import locate, shipped_dir

    _save(tmp_path)
    assert locate("cyclegan.test", tmp_path)[0] == tmp_path
    assert locate("srresnet.x4", tmp_path)[0] == shipped_dir()


def test_load_pipeline_parses_each_manifest_once(monkeypatch, tiny_weights):
    import faceswap_pipeline as fp
    import faceswap_pipeline.weights as w

    parsed = []
    real = w._parse_manifest
    monkeypatch.setattr(w, "_parse_manifest", lambda path: parsed.append(path.resolve()) or real(path))
    fp.load_pipeline("female2male", device="cpu")  # detector, verifier, landmarks, generator, SR x4 + x2
    assert len(parsed) == 1
    parsed.clear()
    fp.load_pipeline("male2female", upscaler="resize", device="cpu", weights_dir=tiny_weights)
    assert len(parsed) == 2 and len(set(parsed)) == 2  # the folder given, then the shipped one
    parsed.clear()
    w.read_manifest(), w.read_manifest()  # outside a loader nothing is kept: a changed manifest is seen
    assert len(parsed) == 2


def test_a_manifest_registered_inside_a_loading_block_is_read_again(tmp_path):
    from faceswap_pipeline.weights import has_model, manifests_read_once

    with manifests_read_once():
        assert not has_model("cyclegan.test", tmp_path)
        _save(tmp_path)
        assert has_model("cyclegan.test", tmp_path)


def test_load_model_takes_the_weights_dir(tmp_path):
    _save(tmp_path)
    assert isinstance(load_model("cyclegan.test", tmp_path), ResnetGenerator)
    assert isinstance(load_model("cyclegan.test", weights_dir=tmp_path), ResnetGenerator)


def test_restore_model_rewrites_storage_in_place_and_keeps_the_entry(tmp_path, monkeypatch):
    import faceswap_pipeline.weights as w
    from faceswap_pipeline.train.export import restore_model
    from faceswap_pipeline.weights import load_state_dict, read_manifest

    monkeypatch.setattr(w, "INT4_MIN_NUMEL", 2000)
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=2).eval()
    kw = {"ngf": 8, "n_blocks": 2}
    sha = save_weights(g, tmp_path / "g.safetensors", arch="cyclegan_resnet", kwargs=kw, storage="int8")
    register_weights("cyclegan.test", {"file": "g.safetensors", "sha256": sha, "arch": "cyclegan_resnet", "kwargs": kw,
                                       "storage": "int8", "training": {"steps": 7, "machine": "m"}, "metrics": {"a": 1}}, tmp_path)
    before, _ = load_state_dict("cyclegan.test", tmp_path)
    path, sha4 = restore_model("cyclegan.test", "int4", tmp_path, metrics={"b": 2})
    entry = read_manifest(tmp_path)["cyclegan.test"]
    assert path == tmp_path / "g.safetensors" and sha4 != sha and entry["sha256"] == sha4
    assert entry["storage"] == "int4" and entry["restored_from"] == {"storage": "int8", "sha256": sha}
    assert entry["training"] == {"steps": 7, "machine": "m"} and entry["metrics"] == {"a": 1, "b": 2}
    after, _ = load_state_dict("cyclegan.test", tmp_path)
    assert after.keys() == before.keys()
    big = [k for k, v in before.items() if v.numel() >= 2000]
    assert big and all(not torch.equal(after[k], before[k]) and (after[k] - before[k]).norm() < 0.15 * before[k].norm() for k in big)


def test_shipped_weights_fit_the_budget():
    from faceswap_pipeline.weights import read_manifest, shipped_dir

    folder = shipped_dir()
    total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert total <= 24_000_000, f"weights/ holds {total / 1e6:.2f} MB, over the 24 MB budget"
    generators = {k: v for k, v in read_manifest(folder).items() if k.startswith("cyclegan.")}
    assert generators and all(v["storage"] in ("int4", "int8") for v in generators.values())


def test_restore_model_into_another_folder_leaves_the_original(tmp_path):
    from faceswap_pipeline.train.export import restore_model
    from faceswap_pipeline.weights import read_manifest

    _save(tmp_path / "src", storage="fp32")
    before = (tmp_path / "src" / "g.safetensors").read_bytes()
    path, sha = restore_model("cyclegan.test", "fp16", tmp_path / "src", out_dir=tmp_path / "out")
    assert path == tmp_path / "out" / "g.safetensors" and (tmp_path / "src" / "g.safetensors").read_bytes() == before
    assert read_manifest(tmp_path / "out")["cyclegan.test"]["storage"] == "fp16"
    assert read_manifest(tmp_path / "src")["cyclegan.test"]["storage"] == "fp32"
    assert isinstance(load_model("cyclegan.test", tmp_path / "out"), ResnetGenerator)

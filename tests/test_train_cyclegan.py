"""CPU tests of the CycleGAN trainer on a tiny config (ngf=4, n_blocks=1, 32x32 synthetic faces)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from faceswap_pipeline.archs.attributes import AttributeNet
from faceswap_pipeline.train import cyclegan as cg


def _data(seed: int = 0, n: int = 12, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 255, size).view(1, 1, 1, size).expand(n, 3, size, size)
    noise = torch.randint(0, 60, (2, n, 3, size, size), generator=g)
    m = (base * 0.8 + noise[0]).clamp(0, 255).to(torch.uint8)
    f = (base.flip(3) * 0.8 + noise[1]).clamp(0, 255).to(torch.uint8)
    return m, f


def _cfg(tmp_path: Path, **kw) -> cg.CycleGANConfig:
    base = dict(ngf=4, n_blocks=1, ndf=8, n_layers=3, image_size=32, batch_size=2, pool_size=3, n_steps=6, n_steps_decay=3,
                amp="none", log_every=2, grid_every=0, val_every=0, ckpt_every=0, tensorboard=False, jitter=2,
                run_dir=str(tmp_path / "run"), device="cpu", seed=3)
    base.update(kw)
    return cg.CycleGANConfig(**base)


def _feat_net() -> AttributeNet:
    torch.manual_seed(123)
    return AttributeNet(width=4, in_size=32)


def _trainer(cfg: cg.CycleGANConfig, rank: int = 0, world: int = 1) -> cg.CycleGANTrainer:
    m, f = _data()
    return cg.CycleGANTrainer(cfg, m[rank::world], f[rank::world], _feat_net(), m[:4], f[:4], rank, world)


def test_few_steps_finite_and_learning(tmp_path: Path) -> None:
    tr = _trainer(_cfg(tmp_path))
    before = {k: v.clone() for k, v in tr.nets["G_m2f"].state_dict().items()}
    logs: list[dict[str, float]] = []
    out = tr.fit(on_log=logs.append)
    assert out["step"] == 6 and out["pairs_seen"] == 12
    assert len(logs) == 3
    for rec in logs:
        assert all(np.isfinite(rec[k]) for k in cg.LOSS_NAMES)
        assert rec["G_idt"] > 0  # the perceptual identity term is active
    after = tr.nets["G_m2f"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "run" / "last.pt").is_file()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lambda_cycle"] == 10.0 and saved["ngf"] == 4
    # checkpoint is loadable with weights_only=True and self-describing
    ck = cg.load_checkpoint(tmp_path / "run" / "last.pt")
    assert {"G_m2f", "G_f2m", "D_m", "D_f", "opts", "scheds", "pool", "rng", "config"} <= set(ck)


def test_bf16_grid_and_validation(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, amp="bf16", n_steps=2, n_steps_decay=0, grid_every=2, val_every=2, channels_last=True)
    tr = _trainer(cfg)
    tr.fit()
    assert len(tr.history) == 1 and 0.0 <= tr.history[0]["val/target_rate_m2f"] <= 1.0
    grids = list((tmp_path / "run" / "grids").glob("*.png"))
    assert grids
    import imageio.v3 as iio

    img = iio.imread(grids[0])
    assert img.shape == (2 * 32, 4 * 4 * 32, 3)  # 2 rows; 4 val faces x (real, fake, rec, idt)


def test_resume_continues_identically(tmp_path: Path) -> None:
    full = _trainer(_cfg(tmp_path / "a"))
    logs_full: list[dict[str, float]] = []
    full.fit(on_log=logs_full.append)

    first = _trainer(_cfg(tmp_path / "b"))
    logs_b: list[dict[str, float]] = []
    first.fit(max_steps=4, on_log=logs_b.append)
    ck = cg.load_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert ck["step"] == 4
    torch.manual_seed(999)  # resuming must not depend on the process' RNG state
    second = _trainer(_cfg(tmp_path / "b"))
    second.load_state_dict(ck)
    second.fit(on_log=logs_b.append)
    assert second.step == 6
    for name in ("G_m2f", "G_f2m", "D_m", "D_f"):
        a, b = full.nets[name].state_dict(), second.nets[name].state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    assert [r["G_cycle"] for r in logs_full] == [r["G_cycle"] for r in logs_b]
    assert [r["D_f"] for r in logs_full] == [r["D_f"] for r in logs_b]


def _reference_pool(pool: list[torch.Tensor], count: int, size: int, images: torch.Tensor, swap, slot):
    """The reference implementation's per-image loop, fed the same random draws."""
    out, j = [], 0
    for img in images:
        if count < size:
            pool.append(img.clone())
            count += 1
            out.append(img)
            continue
        if swap[j]:
            s = int(slot[j])
            out.append(pool[s].clone())
            pool[s] = img.clone()
        else:
            out.append(img)
        j += 1
    return torch.stack(out), count


def test_image_pool_matches_reference_semantics() -> None:
    size = 5
    pool = cg.ImagePool(size)
    ref: list[torch.Tensor] = []
    count = 0
    g = torch.Generator().manual_seed(0)
    for step in range(12):
        b = 4 if step % 3 else 7  # batches straddling the fill boundary and colliding slots
        imgs = torch.rand(b, 1, 2, 2, generator=g) + step
        k = max(0, min(b, size - pool.count))
        state = torch.get_rng_state()
        got = pool.query(imgs)
        torch.set_rng_state(state)  # replay the pool's draws for the reference
        n = b - k
        swap = torch.rand(n) > 0.5 if n else torch.zeros(0, dtype=torch.bool)
        slot = torch.randint(size, (n,)) if n else torch.zeros(0, dtype=torch.long)
        want, count = _reference_pool(ref, count, size, imgs, swap, slot)
        assert torch.equal(got, want), step
        assert torch.equal(pool.images[:size], torch.stack(ref)), step
    # about half the returned images come from history
    assert pool.count == size


def test_pool_size_zero_passthrough() -> None:
    x = torch.rand(3, 3, 4, 4)
    assert torch.equal(cg.ImagePool(0).query(x), x)


def test_augment_flip_and_range() -> None:
    x = torch.arange(2 * 3 * 8 * 8).remainder(256).to(torch.uint8).view(2, 3, 8, 8)
    torch.manual_seed(0)
    y = cg.augment(x, flip=True, jitter=2)
    assert y.shape == (2, 3, 8, 8) and y.dtype == torch.float32
    assert y.min() >= -1 and y.max() <= 1
    y0 = cg.augment(x, flip=False, jitter=0)
    assert torch.allclose(y0, x.float() / 127.5 - 1)
    # integer-pixel jitter only moves pixels: every output value is an input value
    vals = set((x.float() / 127.5 - 1).flatten().tolist())
    assert set(y.flatten().tolist()) <= vals


def test_lr_schedule_linear_decay() -> None:
    assert cg.lr_factor(0, 100, 50) == 1.0
    assert cg.lr_factor(49, 100, 50) == 1.0
    assert cg.lr_factor(50, 100, 50) == 1.0
    assert 0 < cg.lr_factor(99, 100, 50) < 0.05
    assert cg.lr_factor(75, 100, 50) == pytest.approx(1 - 25 / 51)


def test_selection_and_pack_reading(tmp_path: Path) -> None:
    n = 6
    imgs = np.zeros((n, 32, 32, 3), np.uint8)
    imgs[:, :, :, 0] = np.arange(n)[:, None, None]
    np.savez(tmp_path / "p.npz", images=imgs, gender=np.array([0, 1, 0, 1, 0, 1]), age=np.array([5, 20, 30, 40, 80, 25]))
    (tmp_path / "p.json").write_text(json.dumps({"framing": {"rescale": [1.1, 1.2, 1.1, 1.1], "size": 128}}))
    images, labels, meta = cg.read_pack(tmp_path / "p.npz")
    assert images.shape == (n, 32, 32, 3) and set(labels) == {"gender", "age"}
    assert meta["framing"]["size"] == 128
    t = cg.load_domain(str(tmp_path / "p.npz"), "gender=0, age>=18")
    assert t.shape == (2, 3, 32, 32) and t.dtype == torch.uint8
    assert t[:, 0, 0, 0].tolist() == [2, 4]
    with pytest.raises(ValueError):
        cg.load_domain(str(tmp_path / "p.npz"), "colour=3")


def test_flags_generated_from_config() -> None:
    p = cg._parser()
    args = p.parse_args(["--batch-size", "8", "--lambda-identity", "2.5", "--compile", "true", "--select-m", "gender=0"])
    cfg = cg.config_from_args(args)
    assert cfg.batch_size == 8 and cfg.lambda_identity == 2.5 and cfg.compile is True
    assert cfg.lr == 2e-4 and cfg.pool_size == 50 and cfg.lambda_cycle == 10.0  # seed defaults
    with pytest.raises(SystemExit):
        cg.main(["--help"])


def test_export_int8_roundtrip(tmp_path: Path) -> None:
    from faceswap_pipeline.weights import load_model, model_entry

    tr = _trainer(_cfg(tmp_path, n_steps=2, n_steps_decay=0, threads=1))
    tr.fit()
    wdir = tmp_path / "weights"
    torch.set_num_threads(2)  # the exporting process's threads are not the run's
    try:
        cg.export(tmp_path / "run" / "last.pt", wdir, "int8", framing={"rescale": [1, 1, 1, 1], "size": 32}, command="test")
    finally:
        torch.set_num_threads(1)
    m, f = _data(1)
    x = m[:4].float() / 127.5 - 1
    for direction, net in (("male2female", "G_m2f"), ("female2male", "G_f2m")):
        stored = load_model(f"cyclegan.{direction}", weights_dir=wdir)
        with torch.no_grad():
            a, b = stored(x), tr.nets[net].eval()(x)
        assert (a - b).abs().mean() < 0.02, direction
        e = model_entry(f"cyclegan.{direction}", wdir)
        assert e["storage"] == "int8" and e["io"]["range"] == [-1, 1] and e["training"]["steps"] == 2
        assert e["framing"]["size"] == 32 and e["kwargs"] == {"ngf": 4, "n_blocks": 1}
        assert ", 1 torch thread(s), no GPU used" in e["training"]["machine"]
    metrics = cg.evaluate_export(tmp_path / "run" / "last.pt", wdir, _feat_net().eval(), m[:4], f[:4],
                                 sheet_path=tmp_path / "sheet.png", sheet_n=4)
    assert metrics["male2female"]["stored_vs_fp32_mean_abs_diff"] < 0.01
    assert 0.0 <= metrics["female2male"]["val_target_rate"] <= 1.0
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "sheet.png").shape[:2] == (2 * (32 + 2) + 2, 8 * (32 + 2) + 2)


def test_warm_start_from_shipped_generators(tmp_path: Path) -> None:
    from faceswap_pipeline.weights import load_state_dict

    tr = _trainer(_cfg(tmp_path, n_steps=3, n_steps_decay=0, val_every=1))
    tr.fit()
    wdir = tmp_path / "weights"
    cg.export(tmp_path / "run" / "last.pt", wdir, "int8", framing={"size": 32}, command="first run")
    warm = _trainer(_cfg(tmp_path, n_steps=5, n_steps_decay=0, run_dir=str(tmp_path / "run2"), init_generators=str(wdir)))
    warm.warm_start(warm.cfg.init_generators)
    assert warm.step == 3 and warm.pairs_seen == 6 and warm.command == "first run"
    assert [h["step"] for h in warm.history] == [h["step"] for h in tr.history]
    state, _ = load_state_dict("cyclegan.female2male", wdir)
    for k, v in warm.nets["G_f2m"].state_dict().items():
        assert torch.equal(v, state[k].float()), k
    # the discriminators were not loaded: they keep the fresh initialisation
    assert not torch.equal(warm.nets["D_m"].state_dict()["model.0.weight"], tr.nets["D_m"].state_dict()["model.0.weight"])
    g_before = {k: v.clone() for k, v in warm.nets["G_m2f"].state_dict().items()}
    d_before = {k: v.clone() for k, v in warm.nets["D_f"].state_dict().items()}
    d_losses = warm.warmup_discriminators(2)
    assert set(d_losses) == {"D_m", "D_f"} and all(np.isfinite(v) for v in d_losses.values())
    assert warm.step == 3 and warm.pairs_seen == 6  # warm-up steps are not training steps
    assert all(torch.equal(v, g_before[k]) for k, v in warm.nets["G_m2f"].state_dict().items())
    assert any(not torch.equal(v, d_before[k]) for k, v in warm.nets["D_f"].state_dict().items())
    logs: list[dict[str, float]] = []
    out = warm.fit(on_log=logs.append)
    assert out["step"] == 5 and out["pairs_seen"] == 10
    assert logs and all(np.isfinite(r[k]) for r in logs for k in cg.LOSS_NAMES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, tmp: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = _cfg(Path(tmp), n_steps=2, n_steps_decay=0, log_every=1)
        tr = _trainer(cfg, rank, world)
        tr.fit()
        grads = {f"{n}.{k}": p.grad.detach().clone() for n in ("G_m2f", "D_f") for k, p in tr.nets[n].named_parameters()}
        state = {n: tr.nets[n].state_dict() for n in tr.nets}
        torch.save({"state": state, "grads": grads}, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for n in r0["state"]:
        for k in r0["state"][n]:
            assert torch.equal(r0["state"][n][k], r1["state"][n][k]), (n, k)
    for k in r0["grads"]:
        assert torch.allclose(r0["grads"][k], r1["grads"][k], atol=1e-7), k
    # the two ranks saw different data (disjoint shards), so averaging actually happened
    assert (tmp_path / "run" / "last.pt").is_file()  # rank 0 saved
    single = _trainer(_cfg(tmp_path / "single", n_steps=2, n_steps_decay=0))
    single.fit()
    assert any(not torch.equal(single.nets["G_m2f"].state_dict()[k], r0["state"]["G_m2f"][k]) for k in r0["state"]["G_m2f"])


def test_config_dataclass_roundtrip() -> None:
    cfg = cg.CycleGANConfig(batch_size=4)
    again = cg.CycleGANConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
    with pytest.raises(ValueError):
        cg.CycleGANConfig(amp="fp16").validate()


def test_reads_jpeg_packs(tmp_path: Path) -> None:
    import io

    from PIL import Image

    blobs, n = [], 4
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(buf, format="JPEG", quality=95)
        blobs.append(buf.getvalue())
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    meta = {"framing": {"rescale": [1.1, 1.1, 1.1, 1.3], "size": 16}}
    np.savez(tmp_path / "utk_train.npz", jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets,
             gender=np.array([0, 1, 1, 0], np.int8), age=np.array([30, 30, 10, 50], np.int16),
             name=np.array(["a", "b", "c", "d"]), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    images, labels, got = cg.read_pack(tmp_path / "utk_train.npz", "gender=1,age>=18")
    assert images.shape == (1, 16, 16, 3) and abs(int(images[0].mean()) - 60) <= 2
    assert labels["age"].tolist() == [30] and got["framing"]["size"] == 16

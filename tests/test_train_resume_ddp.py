"""Crash safety and multi-process training, for real: a training process is SIGKILLed mid-epoch
and resumed from the command line; two CPU processes train with DDP on gloo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.multiprocessing as mp  # noqa: E402

from edgeseg.checkpoint import load_model, read_checkpoint_header  # noqa: E402
from edgeseg.models import tiny_config  # noqa: E402
from edgeseg.train import LAST, TRAIN_STATE, TrainConfig, train  # noqa: E402
from edgeseg.train.state import read_train_state_header  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = "lraspp_mobilenetv3_small"


def tiny_cfg(out: Path, **changes) -> TrainConfig:
    # 16 images, batch 2: 8 steps per epoch.
    base = dict(model=SMALL, model_options=tiny_config(SMALL), data=("synthetic",),
                data_options={"size": [64, 64], "length": 16}, size=(64, 64), iters=12, batch_size=2,
                workers=0, checkpoint_every=4, out=str(out), optimizer="adamw", lr=0.01, device="cpu")
    base.update(changes)
    return TrainConfig(**base)


# The child trains and SIGKILLs itself after step 6: mid-epoch 0 (8 steps), two steps after the
# checkpoint of step 4. A real kill: no exception handler, no atexit, no flush runs.
KILL_AT_6 = """
import os, signal, sys, torch
torch.set_num_threads(1)
from edgeseg.train import TrainConfig, train
def kill(step):
    if step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
train(TrainConfig.from_yaml(sys.argv[1]), progress=False, on_step_end=kill)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    killed_dir = tmp_path / "killed"
    cfg = tiny_cfg(killed_dir)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(cfg.to_yaml())

    proc = subprocess.run([sys.executable, "-c", KILL_AT_6, str(cfg_file)], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert read_train_state_header(killed_dir / TRAIN_STATE)["step"] == 4  # steps 5-6 lost, no more
    assert read_checkpoint_header(killed_dir / LAST)[0]["extra"]["step"] == 4

    resumed = subprocess.run(
        [sys.executable, "-m", "edgeseg", "train", "--resume", "--out", str(killed_dir), "--no-progress"],
        env=_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "from step 4 to 12" in resumed.stdout  # resumed at the checkpoint, ran to the end
    state = read_train_state_header(killed_dir / TRAIN_STATE)
    assert state["step"] == 12
    assert [row["step"] for row in state["history"]] == [8, 12]  # eval at the epoch end, and the end
    assert not list(killed_dir.glob(".*.tmp")), "the kill or the resume left temporary files"

    # The same config without a kill, in this process. The data stream is a function of
    # (seed, step) and the optimizer/RNG state is restored exactly, so on one CPU thread the
    # weights agree bit for bit; the tolerance only absorbs a different BLAS code path.
    reference = train(cfg.replace(out=str(tmp_path / "uninterrupted")), progress=False)
    resumed_model = load_model(killed_dir / LAST)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    assert state["history"][-1]["miou"] == pytest.approx(reference.final_metrics["miou"], abs=1e-6)


def _ddp_worker(rank: int, port: int, out: str, results: str) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    result = train(tiny_cfg(Path(out), iters=4, checkpoint_every=2), progress=False)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    written = ",".join(sorted({Path(p).name for p in result.checkpoints_written}))
    save_file(state, f"{results}/rank{rank}.safetensors",
              metadata={"written": written, "miou": repr(result.final_metrics["miou"]), "step": str(result.step)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    from safetensors import safe_open

    out, results = tmp_path / "ddp", tmp_path / "results"
    results.mkdir()
    mp.spawn(_ddp_worker, args=(_free_port(), str(out), str(results)), nprocs=2, join=True)
    ranks = []
    for rank in range(2):
        with safe_open(str(results / f"rank{rank}.safetensors"), framework="pt") as f:
            ranks.append(({k: f.get_tensor(k) for k in f.keys()}, f.metadata()))
    (w0, m0), (w1, m1) = ranks
    # Identical weights and BN statistics on both ranks, and the same (all-reduced) mIoU.
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    assert m0["miou"] == m1["miou"] and m0["step"] == m1["step"] == "4"
    # Rank 0 alone wrote checkpoints; each step used 2 x 2 images, so 4 steps = one epoch of 16.
    assert m0["written"] == "best.safetensors,last.safetensors,train_state.safetensors"
    assert m1["written"] == ""
    assert read_train_state_header(out / TRAIN_STATE)["step"] == 4
    assert torch.equal(load_model(out / LAST).state_dict()[next(iter(w0))], w0[next(iter(w0))])
    # Whatever N, the checkpoint holds the same thing: a 1-process run of the same world batch
    # (4) writes the same tensors (names, shapes, dtypes: no DDP "module." prefix) and the same
    # header (model, metadata, config apart from batch_size). Only the numbers differ: BatchNorm
    # statistics are per process on CPU (sync_bn, CUDA only, shares them across processes).
    single = tmp_path / "single"
    train(tiny_cfg(single, iters=4, checkpoint_every=2, batch_size=4), progress=False)
    _assert_same_content(out / LAST, single / LAST)


def _assert_same_content(a: Path, b: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(a), framework="pt") as fa, safe_open(str(b), framework="pt") as fb:
        assert sorted(fa.keys()) == sorted(fb.keys())
        for key in fa.keys():
            ta, tb = fa.get_tensor(key), fb.get_tensor(key)
            assert (ta.shape, ta.dtype) == (tb.shape, tb.dtype), key
    (header_a, meta_a), (header_b, meta_b) = read_checkpoint_header(a), read_checkpoint_header(b)
    assert meta_a == meta_b
    config_a, config_b = (dict(h["extra"]["train_config"]) for h in (header_a, header_b))
    assert config_a.pop("batch_size") * 2 == config_b.pop("batch_size")
    config_a.pop("out"), config_b.pop("out")
    assert config_a == config_b
    assert header_a["extra"]["step"] == header_b["extra"]["step"] == 4


def test_sync_bn_on_cpu_is_refused_with_the_reason(tmp_path):
    from edgeseg.errors import ConfigError

    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        train(tiny_cfg(tmp_path / "run", sync_bn=True, iters=1), progress=False)
    assert not (tmp_path / "run" / LAST).exists()

"""Training: config, schedule, the loop on real synthetic data (tiny widths, 64x64), MixLoss
steps against a hand-written reference step, evaluation against an independent re-scoring, and
the errors a user meets."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train_helpers import tiny_cfg  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgeseg.checkpoint import load_model, read_checkpoint_header  # noqa: E402
from edgeseg.errors import ConfigError, InputShapeError  # noqa: E402
from edgeseg.losses import segmentation_cross_entropy  # noqa: E402
from edgeseg.metrics import ConfusionMatrix  # noqa: E402
from edgeseg.models import tiny_config  # noqa: E402
from edgeseg.train import BEST, LAST, TRAIN_STATE, TrainConfig, train  # noqa: E402
from edgeseg.train.data import SeededItems, StepBatchSampler, build_domains  # noqa: E402
from edgeseg.train.schedule import lr_factor  # noqa: E402
from edgeseg.train.state import read_train_state_header  # noqa: E402

MULTI = "multidomain_lraspp_mobilenetv3_small"


# --- config and schedule ---------------------------------------------------------------------

def test_config_from_yaml_with_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model: lraspp_mobilenetv3_small\ndata: [synthetic:day, synthetic:fog]\n"
                    "size: 96x128\niters: 50\noptimizer: adamw\n")
    cfg = TrainConfig.from_yaml(path, iters=7, lr=0.5)
    assert cfg.size == (96, 128) and cfg.data == ("synthetic:day", "synthetic:fog")
    assert cfg.iters == 7 and cfg.lr == 0.5 and cfg.optimizer == "adamw"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what config.yaml holds rebuilds the run


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"iters": 5, "colour": 1}, "unknown field"),
        ({}, "exactly one of epochs or iters"),
        ({"iters": 5, "epochs": 2}, "exactly one of epochs or iters"),
        ({"iters": 5, "size": "12x"}, "HxW"),
        ({"iters": 5, "optimizer": "adam"}, "optimizer 'adam'"),
        ({"iters": 5, "batch_size": 0}, "batch_size must be >= 1"),
        ({"iters": 5, "data": []}, "data is empty"),
    ],
)
def test_config_errors_name_the_problem(fields, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(fields)


def test_lr_schedule_values():
    poly = [lr_factor(s, 100, schedule="poly", warmup_steps=10) for s in (0, 4, 9, 10, 55, 100)]
    assert poly[:3] == pytest.approx([0.1, 0.5, 1.0])  # linear warm-up
    assert poly[3] == pytest.approx(1.0)
    assert poly[4] == pytest.approx(0.5**0.9)  # half-way through the decay
    assert poly[5] == 0.0
    assert lr_factor(50, 100, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(25, 100, schedule="cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_batches_are_a_function_of_step_and_rank():
    # Resuming at step 3 replays exactly the batches the uninterrupted stream gives from step 3;
    # two ranks never share a sample in a step and together cover a whole epoch.
    def batches(start, rank=0, world=1, n=6):
        it = iter(StepBatchSampler(20, batch_size=2, seed=1, domain="d", start_step=start, rank=rank, world_size=world))
        return [next(it) for _ in range(n)]

    assert batches(0)[3:] == batches(3, n=3)
    r0, r1 = batches(0, 0, 2, 5), batches(0, 1, 2, 5)
    epoch = [i for b in r0 + r1 for i, _ in b]
    assert sorted(epoch) == list(range(20))
    assert batches(0, n=20)[10] != batches(0, n=20)[0]  # a new permutation each epoch
    with pytest.raises(ConfigError, match="fewer than one step"):
        StepBatchSampler(3, batch_size=2, seed=0, domain="d", start_step=0, world_size=2)


# --- the loop --------------------------------------------------------------------------------

def test_single_domain_run_writes_checkpoints_metrics_and_scores_correctly(tmp_path):
    cfg = tiny_cfg(tmp_path, iters=6, eval_every=3)
    result = train(cfg, progress=False)
    out = cfg.out_dir
    assert result.step == 6 and result.images_per_s > 0
    for name in (LAST, BEST, TRAIN_STATE, "metrics.csv", "config.yaml"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp")), "atomic writes left temporaries"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert TrainConfig.from_yaml(out / "config.yaml") == cfg

    header, metadata = read_checkpoint_header(out / LAST)
    assert header["extra"]["step"] == 6
    assert metadata.classes == build_domains(cfg.data, train_split="train", val_split="val",
                                             options=cfg.data_options)[0].classes
    assert metadata.input_size == (64, 64)
    assert read_train_state_header(out / TRAIN_STATE)["step"] == 6

    # Re-score the saved model independently: the run's mIoU must be the real one.
    model = load_model(out / LAST)
    (domain,) = build_domains(cfg.data, train_split="train", val_split="val", options=cfg.data_options)
    from edgeseg.data.transforms import EvalTransform

    transform = EvalTransform((64, 64), metadata.mean, metadata.std)
    matrix = ConfusionMatrix(len(domain.classes))
    with torch.no_grad():
        for i in range(len(domain.val)):
            image, mask = transform(domain.val[i], np.random.default_rng(0))
            matrix.update(model(image[None]).argmax(1)[0].numpy(), mask.numpy())
    assert float(rows[-1]["miou"]) == pytest.approx(matrix.scores().miou, abs=1e-9)
    assert result.final_metrics["miou"] == pytest.approx(matrix.scores().miou, abs=1e-9)


def test_multidomain_step_is_the_sum_of_domain_cross_entropies(tmp_path):
    # One SGD step of the trainer equals a hand-written MixLoss step: each domain's batch through
    # the shared encoder and its own head, CEs summed, one backward. "coarse" has other classes.
    cfg = tiny_cfg(tmp_path, model=MULTI, model_options=tiny_config(MULTI), data=("synthetic:day", "synthetic:coarse"),
                   iters=1, momentum=0.0, weight_decay=0.0, lr=0.1, schedule="poly", bn_momentum=None)
    result = train(cfg, progress=False)

    from edgeseg.data.transforms import TrainTransform
    from edgeseg.train.model import build_model

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    domains = build_domains(cfg.data, train_split="train", val_split="val", options=cfg.data_options)
    assert [d.name for d in domains] == ["synthetic_day", "synthetic_coarse"]
    assert len(domains[0].classes) != len(domains[1].classes)
    reference = build_model(cfg.model, cfg.model_options, domains, cfg.size)
    reference.train()
    transform = TrainTransform(cfg.size, reference.metadata.mean, reference.metadata.std)
    total = 0.0
    for d in domains:
        items = SeededItems(d.train, transform)
        batch = next(iter(StepBatchSampler(len(d.train), batch_size=2, seed=cfg.seed, domain=d.name, start_step=0)))
        x = torch.stack([items[i][0] for i in batch])
        y = torch.stack([items[i][1] for i in batch])
        total = total + segmentation_cross_entropy(reference(x, domain=d.name), y)
    total.backward()
    with torch.no_grad():
        for p in reference.parameters():
            if p.grad is not None:
                p -= cfg.lr * lr_factor(0, 1, schedule="poly") * p.grad
    trained = result.model.state_dict()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(trained[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert {f"{d.name}/miou" for d in domains} <= set(result.final_metrics)
    assert load_model(cfg.out_dir / LAST).metadata.domain_info("synthetic_coarse").classes == domains[1].classes


# --- errors ----------------------------------------------------------------------------------

def test_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'lraspp_mobilenetv3_smal'.*Did you mean"):
        train(tiny_cfg(tmp_path, model="lraspp_mobilenetv3_smal", model_options={}), progress=False)
    with pytest.raises(InputShapeError, match="multiples of 16.*got 40x64"):
        train(tiny_cfg(tmp_path, size=(40, 64)), progress=False)
    with pytest.raises(ConfigError, match="multidomain_"):
        train(tiny_cfg(tmp_path, data=("synthetic:day", "synthetic:fog")), progress=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create output directory"):
        train(tiny_cfg(tmp_path, out=str(blocker / "run")), progress=False)
    with pytest.raises(ConfigError, match="output directory .* is a file"):
        train(tiny_cfg(tmp_path, out=str(blocker)), progress=False)
    empty = tmp_path / "empty"
    for sub in ("images/train", "masks/train", "images/val", "masks/val"):
        (empty / sub).mkdir(parents=True)
    (empty / "classes.yaml").write_text("classes: [road, sky]\n")
    with pytest.raises(Exception, match="no images found"):
        train(tiny_cfg(tmp_path, data=(f"folder:{empty}",), data_options={}), progress=False)
    with pytest.raises(ConfigError, match="8 training samples cannot fill one batch of 16"):
        train(tiny_cfg(tmp_path, batch_size=16), progress=False)
    done = tiny_cfg(tmp_path, out=str(tmp_path / "done"), iters=1)
    train(done, progress=False)
    with pytest.raises(ConfigError, match="already holds a training run.*--resume"):
        train(done, progress=False)
    with pytest.raises(Exception, match="cannot resume"):
        train(tiny_cfg(tmp_path, out=str(tmp_path / "never_ran")), resume=True, progress=False)


def test_cli_reports_errors_and_trains(tmp_path):
    from edgeseg.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["train", "--model", "nope", "--iters", "1", "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, ConfigError) and "unknown model 'nope'" in str(bad.exception)
    bad_size = runner.invoke(app, ["train", "--size", "64by64", "--iters", "1"])
    assert isinstance(bad_size.exception, ConfigError) and "HxW" in str(bad_size.exception)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(tiny_cfg(tmp_path).to_yaml())
    ok = runner.invoke(app, ["train", "--config", str(cfg), "--iters", "2", "--no-progress",
                             "--out", str(tmp_path / "cli")])
    assert ok.exit_code == 0, ok.output
    assert "trained lraspp_mobilenetv3_small for 2 steps" in ok.output
    assert read_checkpoint_header(tmp_path / "cli" / LAST)[0]["extra"]["step"] == 2

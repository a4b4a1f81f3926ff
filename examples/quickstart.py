"""The whole product in one command: train -> QAT -> convert -> validate + bench -> report.

    python examples/quickstart.py                # 4 (quiet) to 8 (busy) minutes on 2 shared CPU cores
    python examples/quickstart.py --tiny         # the same stages at toy sizes (CI): about 1 minute

1. **train** LR-ASPP MobileNetV3-Small on the synthetic street scenes (AdamW, poly schedule,
   time-capped), keeping the best checkpoint by validation mIoU;
2. **QAT**: fine-tune it for one epoch under fake quantization (PT2E, the per-channel int8 scheme
   the TFLite, ONNX and OpenVINO int8 paths share); every int8 file is converted from it,
   re-calibrated, and gated against the float checkpoint (if QAT fails, int8 comes from PTQ);
3. **convert** the float and the int8 model to every target that runs here (ONNX Runtime,
   LiteRT/TFLite, OpenVINO; CoreML converts on Linux but runs on macOS only: ``--targets coreml``
   adds it, reported as not verifiable here); each file is checked against PyTorch before it is kept;
4. **validate** every file against the float checkpoint on held-out synthetic images (mIoU, pixel
   agreement, gates) and **bench** them (p50/p99 latency, model call vs full predict);
5. **report**: ``<out>/report/report.html`` (+ .md/.json, from the validation harness) and
   ``<out>/quickstart.md`` (+ .json) with every stage's time and outcome.

A stage that fails for one target is reported and the run goes on; the exit status is 1 when any
file failed, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeseg.runtime.formats import targets

# The targets in the order they are converted (the format table's); the ones whose runtime works
# here are the default.
TARGET_ORDER = tuple(targets())


@dataclass(frozen=True)
class Plan:
    """Sizes of one quickstart run. FULL fits 15 minutes on 2 cores; TINY is the CI smoke run."""

    model: str  # registry name (`edgeseg models`)
    tiny_widths: bool  # build the registry's tiny variant (narrow layers) instead of the real one
    size: tuple[int, int]  # training crop = export input size (H, W)
    train_iters: int  # optimizer steps (upper bound)
    train_minutes: float | None  # wall-time cap of training (None: run all steps)
    batch_size: int
    # DataLoader worker processes. 0 for TINY: it runs inside pytest, where other tests may have
    # started JAX threads (LiteRT), and forking a process with live threads can deadlock.
    data_workers: int
    train_images: int | None  # synthetic training set length (None: the dataset default, 2000)
    eval_images: int  # validation images per evaluation during training
    qat_images: int  # images of the one fake-quantization fine-tuning epoch
    calib_images: int  # calibration images of post-training quantization and of QAT's observers
    val_images: int  # held-out images the harness scores every file on
    bench_runs: int  # timed rounds per file (round robin)
    bench_warmup: int


FULL = Plan(
    model="lraspp_mobilenetv3_small", tiny_widths=False, size=(128, 256), train_iters=600,
    train_minutes=5.5, batch_size=8, data_workers=1, train_images=None, eval_images=50, qat_images=256,
    calib_images=32, val_images=100, bench_runs=30, bench_warmup=5,
)
TINY = Plan(
    model="lraspp_mobilenetv3_small", tiny_widths=True, size=(64, 64), train_iters=6,
    train_minutes=None, batch_size=4, data_workers=0, train_images=32, eval_images=4, qat_images=8,
    calib_images=4, val_images=4, bench_runs=3, bench_warmup=1,
)


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    status: str = "pending"  # pending | done | failed | skipped
    detail: str = ""


@dataclass
class Outcome:
    """What the run produced: the quickstart report's content."""

    plan: dict
    out: str
    stages: list[Stage] = field(default_factory=list)
    checkpoint: str | None = None
    qat_checkpoint: str | None = None
    files: list[dict] = field(default_factory=list)  # one per converted (or failed) file
    train: dict = field(default_factory=dict)
    report: str | None = None
    total_seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(s.status == "failed" for s in self.stages) or any(f["status"] == "failed" for f in self.files)


class _Terminal:
    """stderr of the person at the terminal, also while a stage holds the libraries' native output
    back (edgeseg.quiet.native_output_captured)."""

    def write(self, text: str) -> int:
        from edgeseg.quiet import terminal

        return terminal().write(text)

    def flush(self) -> None:
        from edgeseg.quiet import terminal

        terminal().flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class Progress:
    """One line per stage with its number, elapsed time and the whole run's clock."""

    def __init__(self, total: int, quiet: bool):
        from rich.console import Console

        self.console = Console(file=_Terminal(), quiet=quiet)
        self.total = total
        self.start = time.perf_counter()
        self.index = 0

    def stage(self, name: str, what: str) -> None:
        self.index += 1
        clock = time.perf_counter() - self.start
        self.console.rule(f"[bold][{self.index}/{self.total}] {name}[/] · {what} · {clock / 60:.1f} min so far")

    def say(self, text: str) -> None:
        self.console.print(f"  {text}")


def run_stage(outcome: Outcome, progress: Progress, name: str, what: str, work, *,
              hold_native: bool = True) -> object | None:
    """Run ``work()`` as a stage: time it, record done/failed, never let one stage end the run.
    What the libraries' native code prints is held back (shown if the stage fails) unless
    ``--verbose``; ``hold_native=False`` for a stage that draws its own progress bar."""
    from edgeseg.quiet import native_output_captured

    stage = Stage(name)
    outcome.stages.append(stage)
    progress.stage(name, what)
    start = time.perf_counter()
    try:
        with native_output_captured(hold_native):
            result = work()
        stage.status = "done" if stage.status == "pending" else stage.status
        return result
    except Exception as exc:  # reported in quickstart.md; the following stages still run
        stage.status, stage.detail = "failed", f"{type(exc).__name__}: {exc}"
        progress.say(f"[red]failed[/]: {stage.detail}")
        progress.console.print(traceback.format_exc(limit=3), markup=False, highlight=False)
        return None
    finally:
        stage.seconds = time.perf_counter() - start


# --- stages -----------------------------------------------------------------------------------
def train_model(plan: Plan, out: Path, progress: Progress, quiet: bool, outcome: Outcome) -> Path:
    from edgeseg.models import tiny_config
    from edgeseg.train import BEST, TrainConfig, train

    data_options = {"size": plan.size} | ({"length": plan.train_images} if plan.train_images else {})
    cfg = TrainConfig(
        model=plan.model, model_options=tiny_config(plan.model) if plan.tiny_widths else {},
        data=("synthetic",), data_options=data_options, optimizer="adamw", lr=3e-3, schedule="poly",
        warmup_steps=min(30, plan.train_iters // 5), iters=plan.train_iters, max_minutes=plan.train_minutes,
        batch_size=plan.batch_size, size=plan.size, workers=plan.data_workers, eval_every=0, eval_limit=plan.eval_images,
        checkpoint_every=max(1, plan.train_iters), log_every=max(1, min(10, plan.train_iters)),
        out=str(out / "train"), seed=0,
    )
    result = train(cfg, progress=not quiet)
    best = result.out_dir / BEST
    metrics = result.final_metrics
    outcome.train = {
        "steps": result.step, "seconds": result.seconds, "images_per_s": result.images_per_s,
        "final_metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
    }
    progress.say(f"{result.step} steps, {result.images_per_s:.1f} images/s; best checkpoint {best}")
    return best


def qat_model(best: Path, plan: Plan, out: Path, quantized: list[str], progress: Progress,
              outcome: Outcome) -> Path | None:
    """Fine-tune ``best`` under fake quantization (one checkpoint for every int8 target)."""
    import importlib.util

    stage = outcome.stages[-1]
    if not quantized:
        stage.detail = "no target converts int8 in this edgeseg build"
    elif importlib.util.find_spec("edgeseg.quantization.qat") is None:
        stage.detail = "this edgeseg build has no QAT (edgeseg.quantization.qat): int8 comes from PTQ"
    if stage.detail:
        stage.status = "skipped"
        progress.say(stage.detail)
        return None
    from edgeseg.quantization.qat import QatConfig, qat_finetune

    # "all": the PT2E scheme shared by the TFLite, ONNX and OpenVINO int8 paths.
    cfg = QatConfig(target="all" if len(quantized) > 1 else quantized[0], epochs=1,
                    train_images=plan.qat_images, batch_size=plan.batch_size)
    result = qat_finetune(best, cfg, out / "qat" / "qat.safetensors")
    stage.detail = f"{result.steps} steps ({result.recipe}), loss {result.losses[-1]:.3f}"
    progress.say(f"{stage.detail}; checkpoint {result.checkpoint}")
    return Path(result.checkpoint)


def int8_options(plan: Plan, reference: Path) -> dict:
    """convert() arguments of an int8 file: calibration images and the harness gate's reference."""
    from edgeseg.quantization.options import QuantOptions

    quant = QuantOptions(calibration="synthetic:train", calib_size=plan.calib_images,
                         gate_images=plan.val_images, reference=str(reference))
    return {"quant": quant}


def int8_targets(targets: list[str]) -> list[str]:
    """Targets whose converter accepts --precision int8 in this edgeseg."""
    from edgeseg.converters import TARGETS

    return [t for t in targets if "int8" in TARGETS[t].precisions]


def convert_all(checkpoint: Path, targets: list[str], precision: str, out: Path, progress: Progress,
                outcome: Outcome, convert_options: dict) -> None:
    from edgeseg.converters import TARGETS, convert

    for target in targets:
        spec = TARGETS[target]
        dest = out / "files" / f"model_{precision}{spec.suffix}"
        start = time.perf_counter()
        entry = {"target": target, "precision": precision, "path": str(dest), "status": "failed"}
        try:
            result = convert(checkpoint, target, precision=precision, out=dest, **convert_options)
            converted = result.files[0]
            entry.update(path=str(converted.path), status="converted", check=converted.report.summary(),
                         runs_here=spec.runs_here())
        except Exception as exc:  # one target failing must not hide the others' results
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["seconds"] = time.perf_counter() - start
        outcome.files.append(entry)
        progress.say(f"{target} {precision}: {entry['status']} in {entry['seconds']:.0f} s"
                     + (f" ({entry['error']})" if "error" in entry else ""))


def validate_and_bench(checkpoint: Path, plan: Plan, out: Path, threads: int | None, progress: Progress,
                       outcome: Outcome) -> Path:
    from edgeseg.validate import CANNOT_RUN_HERE, FAILED_TO_LOAD, Gates, validate
    from edgeseg.validate.bench import bench
    from edgeseg.validate.report import write_report

    paths = [f["path"] for f in outcome.files if f["status"] == "converted"]
    if not paths:
        raise RuntimeError("no converted file to validate: every conversion failed (see above)")
    say = progress.say
    # The harness's defaults: each file is held to its own precision's agreement gate, and every
    # file to a mIoU drop of at most 0.5 points (issue 7's int8 target).
    gates = Gates()
    run = validate(paths, checkpoint, "synthetic:val", gates=gates, limit=plan.val_images,
                   threads=threads, data_options={"size": plan.size}, progress=say)
    runnable = [f.path for f in run.files if f.status not in (FAILED_TO_LOAD, CANNOT_RUN_HERE)]
    timing = bench(runnable, threads=threads, warmup=plan.bench_warmup, runs=plan.bench_runs,
                   cold_start=False, progress=say) if runnable else None
    for entry in outcome.files:
        result = next((f for f in run.files if f.path == entry["path"]), None)
        if result is None:
            continue
        # The gate of the precision the file ran at (an OpenVINO fp32 file verified at bf16 runs
        # at bf16 and is held to the 16-bit gate; result.precision says which).
        entry["validation"] = {"status": result.status, "reason": result.reason, "size_bytes": result.size_bytes,
                               "ran_at": result.precision,
                               "gates": {"max_miou_drop": gates.max_miou_drop,
                                         "min_agreement": gates.agreement_for(result.precision)},
                               **_domain_scores(result)}
        if result.status != "passed" and result.status != CANNOT_RUN_HERE:
            entry["status"] = "failed"
        timed = timing.result_for(entry["path"]) if timing else None
        if timed is not None and timed.predict is not None:
            entry["latency_ms"] = {"predict_p50": timed.predict.p50, "predict_p99": timed.predict.p99,
                                   "model_p50": timed.model_call.p50}
    files = write_report(out / "report", validation=run, bench=timing)
    say(f"report: {files.html}")
    return files.html


def _domain_scores(result) -> dict:
    """mIoU of the file and of the reference on the same images (points), and pixel agreement."""
    if not result.domains:
        return {}
    domain = result.domains[0]
    return {
        "miou": 100.0 * domain.scores.miou,
        "reference_miou": 100.0 * domain.reference.miou if domain.reference else None,
        "miou_drop": domain.miou_drop,
        "agreement": domain.agreement,
    }


# --- report -------------------------------------------------------------------------------------
def write_summary(outcome: Outcome, out: Path) -> Path:
    from edgeseg.fileio import write_json_atomic, write_text_atomic
    from edgeseg.validate import Gates

    lines = [
        "# edgeseg quickstart", "",
        f"Plan: {outcome.plan['model']}{' (tiny widths)' if outcome.plan['tiny_widths'] else ''} at "
        f"{outcome.plan['size'][0]}x{outcome.plan['size'][1]}; total {outcome.total_seconds / 60:.1f} min.", "",
        "| stage | status | time | detail |", "|---|---|---|---|",
    ]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.0f} s | {s.detail} |" for s in outcome.stages]
    lines += ["", "| file | target | precision | status | MB | mIoU (float ref) | agreement | predict p50 / p99 ms |",
              "|---|---|---|---|---|---|---|---|"]
    for f in outcome.files:
        v, lat = f.get("validation", {}), f.get("latency_ms", {})
        miou = f"{v['miou']:.1f} ({v['reference_miou']:.1f})" if v.get("reference_miou") is not None else "-"
        agree = f"{100 * v['agreement']:.2f}%" if v.get("agreement") is not None else "-"
        timing = f"{lat['predict_p50']:.1f} / {lat['predict_p99']:.1f}" if lat else "-"
        status = v.get("status") or f["status"]  # the harness's verdict, else the conversion's
        size = f"{v['size_bytes'] / 1e6:.2f}" if v.get("size_bytes") else "-"
        lines.append(f"| {Path(f['path']).name} | {f['target']} | {f['precision']} | {status} | {size} | {miou} | {agree} | {timing} |")
    lines += ["", "Gates (edgeseg.validate, against the float checkpoint on the same images): "
              + Gates().describe()]
    errors = [f"- {Path(f['path']).name}: {f['error']}" for f in outcome.files if "error" in f]
    errors += [f"- {Path(f['path']).name}: {f['validation']['reason']}" for f in outcome.files
               if f.get("validation", {}).get("reason")]
    if errors:
        lines += ["", "Errors:", *errors]
    if outcome.report:
        lines += ["", f"Full report (plots, per-class IoU, overlays): {outcome.report}"]
    path = out / "quickstart.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    data = asdict(outcome)
    write_json_atomic(out / "quickstart.json", data)
    return path


def quickstart(plan: Plan, out: Path, targets: list[str], *, threads: int | None = None,
               quiet: bool = False) -> Outcome:
    start = time.perf_counter()
    outcome = Outcome(plan=asdict(plan), out=str(out))
    progress = Progress(total=5, quiet=quiet)
    best = run_stage(outcome, progress, "train", f"{plan.model} on synthetic street scenes",
                     lambda: train_model(plan, out, progress, quiet, outcome), hold_native=False)
    if best is None:
        outcome.total_seconds = time.perf_counter() - start
        write_summary(outcome, out)
        return outcome
    outcome.checkpoint = str(best)
    quantized = int8_targets(targets)
    qat = run_stage(outcome, progress, "qat", "fine-tune with fake quantization",
                    lambda: qat_model(best, plan, out, quantized, progress, outcome))
    outcome.qat_checkpoint = str(qat) if qat else None
    run_stage(outcome, progress, "convert", f"fp32 + int8 for {', '.join(targets)}",
              lambda: convert_stage(best, qat, plan, targets, quantized, out, progress, outcome))
    outcome.report = run_stage(outcome, progress, "validate + bench", f"{plan.val_images} held-out images",
                               lambda: str(validate_and_bench(best, plan, out, threads, progress, outcome)))
    outcome.total_seconds = time.perf_counter() - start
    progress.stage("report", str(out / "quickstart.md"))
    write_summary(outcome, out)
    return outcome


def convert_stage(best: Path, qat: Path | None, plan: Plan, targets: list[str], quantized: list[str],
                  out: Path, progress: Progress, outcome: Outcome) -> None:
    convert_all(best, targets, "fp32", out, progress, outcome, {})
    if quantized:
        convert_all(qat or best, quantized, "int8", out, progress, outcome, int8_options(plan, best))
    else:
        progress.say("int8: no target converts int8 in this edgeseg build; fp32 files only")


def main(argv: list[str] | None = None) -> int:
    from edgeseg.quiet import quiet_third_party

    # Before the converters' libraries load: their switches are read at import.
    quiet_third_party(verbose="--verbose" in (sys.argv[1:] if argv is None else argv))
    from edgeseg.converters import TARGETS

    here = [t for t in TARGET_ORDER if TARGETS[t].runs_here()]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: the CI smoke run of every stage")
    parser.add_argument("--out", default="runs/quickstart", help="output folder (checkpoints, files, report)")
    parser.add_argument("--targets", default=",".join(here),
                        help=f"comma-separated targets (default: those that run here: {','.join(here)})")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per backend in validate/bench")
    parser.add_argument("--minutes", type=float, default=None, help="training time cap (default: the plan's)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--verbose", action="store_true",
                        help="also the converters' and other libraries' own messages (off by default)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier quickstart run in --out")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        parser.error(f"--targets {args.targets!r}: choose from {', '.join(TARGET_ORDER)}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            parser.error(f"{out} already holds files (an earlier run?); pass --overwrite to replace "
                         "that quickstart run, or --out NEW_FOLDER")
        if not ((out / "quickstart.json").exists() or (out / "train").is_dir()):
            parser.error(f"--overwrite: {out} does not look like a quickstart folder (no quickstart.json "
                         "or train/); refusing to delete it. Give another --out")
        shutil.rmtree(out)
    plan = TINY if args.tiny else FULL
    if args.minutes is not None:
        plan = Plan(**{**asdict(plan), "train_minutes": args.minutes})
    outcome = quickstart(plan, out, targets, threads=args.threads, quiet=args.quiet)
    print((out / "quickstart.md").read_text())
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())

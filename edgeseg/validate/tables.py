"""The report's tables as (headers, rows of strings), rendered by both Markdown and HTML."""

from __future__ import annotations

from edgeseg.validate.bench import BenchRun
from edgeseg.validate.results import ValidationRun

Table = tuple[list[str], list[list[str]]]


def fmt(value: float | None, spec: str = ".2f", scale: float = 1.0) -> str:
    if value is None or value != value:
        return "n/a"
    text = format(value * scale, spec)
    # A tiny negative rounds to "-0.00"; a reader takes the sign as a real loss.
    return format(0.0, spec) if text.startswith("-") and float(text) == 0 else text


def megabytes(size: int | None) -> str:
    return "n/a" if not size else f"{size / 1e6:.2f} MB"


# What each backend calls the CPU it runs on by default: the backend cell names other devices only.
CPU_DEVICES = {"CPUExecutionProvider", "CPU", "cpu (XNNPACK)", "cpu"}


def on_device(backend: str | None, device: str | None) -> str:
    """The backend cell: the backend, and what ran the graph where that is not the CPU
    ("onnxruntime on CUDAExecutionProvider"); the JSON always has the device."""
    if backend is None:
        return "n/a"
    return f"{backend} on {device}" if device and device not in CPU_DEVICES else backend


def accuracy_table(run: ValidationRun) -> Table:
    headers = [
        "file", "backend", "precision", "size", "domain", "status", "mIoU %", "reference mIoU %",
        "mIoU drop (points)", "pixel acc %", "agreement %", "max |logit err|", "mean |logit err|",
    ]
    rows = []
    for result in run.files:
        common = [result.name, on_device(result.backend, result.device), result.precision or "n/a",
                  megabytes(result.size_bytes)]
        if not result.domains:
            rows.append(common + ["", result.status] + ["n/a"] * 7)
            continue
        for d in result.domains:
            rows.append(common + [
                d.domain or "", result.status,
                fmt(d.scores.miou, scale=100), fmt(d.reference.miou if d.reference else None, scale=100),
                fmt(d.miou_drop), fmt(d.scores.pixel_accuracy, scale=100), fmt(d.agreement, ".3f", 100),
                fmt(d.max_logit_error, ".2e"), fmt(d.mean_logit_error, ".2e"),
            ])
    return headers, rows


def reasons(run: ValidationRun) -> list[tuple[str, str, str]]:
    """(file, status, why) for every file that did not pass."""
    return [(f.name, f.status, f.reason) for f in run.files if not f.passed]


def class_delta_tables(run: ValidationRun) -> dict[str | None, Table]:
    """Per domain: reference IoU per class, then each file's IoU delta in points."""
    tables = {}
    for domain, ref in run.reference.items():
        classes = list(ref.scores.classes)
        rows = [["reference IoU %"] + [fmt(v, ".1f", 100) for v in ref.scores.per_class_iou]]
        for result in run.files:
            for d in result.domains:
                if d.domain == domain:
                    rows.append([f"{result.name} (points)"] + [fmt(v, "+.2f") for v in d.class_deltas.values()])
        tables[domain] = (["class", *classes], rows)
    return tables


def latency_table(run: BenchRun) -> Table:
    headers = [
        "file", "backend", "precision", "size", "image", "status",
        "model call p50 / p90 / p99 / mean ms", "predict p50 / p90 / p99 / mean ms",
        "throughput img/s", "load s", "cold start s", "peak RSS MB",
    ]
    rows = []
    for r in run.files:
        row = [r.name, on_device(r.backend, r.device), r.precision or "n/a", megabytes(r.size_bytes),
               "x".join(map(str, r.image_size)) if r.image_size else "n/a", r.status]
        if r.predict is None:
            rows.append(row + ["n/a"] * 6)
            continue
        cold = r.cold or {}
        rows.append(row + [
            " / ".join(fmt(v) for v in (r.model_call.p50, r.model_call.p90, r.model_call.p99, r.model_call.mean)),
            " / ".join(fmt(v) for v in (r.predict.p50, r.predict.p90, r.predict.p99, r.predict.mean)),
            fmt(r.throughput, ".1f"), fmt(r.load_s, ".3f"), fmt(cold.get("cold_start_s"), ".3f"),
            fmt(cold.get("peak_rss_bytes"), ".1f", 1e-6),
        ])
    return headers, rows


def environment_lines(environment: dict) -> list[str]:
    libs = ", ".join(f"{k} {v}" for k, v in environment.get("libraries", {}).items() if v)
    return [
        f"CPU: {environment.get('cpu')} ({environment.get('machine')}), {environment.get('usable_cpus')} "
        f"usable of {environment.get('logical_cpus')} logical CPUs, {environment.get('system')}",
        f"threads: {environment.get('threads') or 'backend default'} (OMP_NUM_THREADS="
        f"{environment.get('omp_num_threads')}); Python {environment.get('python')}",
        f"libraries: {libs}",
        f"measured: {environment.get('created_utc')}",
    ]

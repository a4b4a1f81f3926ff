"""The report's figures as PNG bytes (matplotlib, Agg, imported only when a report is drawn).

Disagreeing pixels are painted on top of the file's overlay in the colour of :data:`DISAGREE_COLOURS`
farthest from every class colour of the model (magenta unless a class is near magenta), named in
each panel's title, so a reader sees where the file and the reference part ways.
"""

from __future__ import annotations

import io

import numpy as np

from edgeseg.validate.bench import BenchRun
from edgeseg.validate.errors import ValidationSetupError
from edgeseg.validate.results import Sample, ValidationRun

DISAGREE_COLOURS = {
    "magenta": (255, 0, 255), "cyan": (0, 255, 255), "yellow": (255, 255, 0), "white": (255, 255, 255),
    "lime": (0, 255, 0), "red": (255, 0, 0), "blue": (0, 0, 255), "orange": (255, 128, 0),
}


# A highlight at least this far (L1 over RGB) from every class colour reads as "not a class".
MIN_HIGHLIGHT_GAP = 150


def disagree_colour(palette: np.ndarray) -> tuple[str, np.ndarray]:
    """(name, RGB) of the first :data:`DISAGREE_COLOURS` entry at least :data:`MIN_HIGHLIGHT_GAP`
    from every class colour (magenta for most palettes), else the one farthest from them all."""
    classes = np.asarray(palette, np.int32).reshape(-1, 3)

    def gap(name: str) -> int:
        return int(np.abs(classes - np.asarray(DISAGREE_COLOURS[name])).sum(1).min()) if len(classes) else 765

    name = next((n for n in DISAGREE_COLOURS if gap(n) >= MIN_HIGHLIGHT_GAP), None)
    name = name or max(DISAGREE_COLOURS, key=gap)
    return name, np.asarray(DISAGREE_COLOURS[name], np.uint8)
IGNORED = np.array([0, 0, 0], np.uint8)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValidationSetupError(
            'the HTML report draws its plots with matplotlib: pip install "edgeseg[report]"'
        ) from exc
    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def accuracy_vs_latency(run: ValidationRun, timing: BenchRun | None) -> bytes:
    """mIoU per file and domain against p50 predict latency (or file size without a bench).

    One colour per file, one marker per domain; hollow markers failed validation.
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    domains = sorted({d.domain or "" for f in run.files for d in f.domains})
    markers = dict(zip(domains, "os^Dv<>Ph*"))
    handles = []
    for index, result in enumerate(r for r in run.files if r.domains):
        timed = timing.result_for(result.path) if timing else None
        if timing and (timed is None or timed.predict is None):
            continue
        x = timed.predict.p50 if timing else result.size_bytes / 1e6
        colour = colours[index % len(colours)]
        for d in result.domains:
            ax.scatter([x], [100 * d.scores.miou], marker=markers[d.domain or ""], s=55, linewidths=1.5,
                       edgecolors=colour, facecolors=colour if result.passed else "none")
        handles.append(Line2D([], [], color=colour, lw=6, label=result.name))
    if any(domains):
        handles += [Line2D([], [], color="black", marker=m, ls="", label=f"domain {d}" if d else "single head")
                    for d, m in markers.items()]
    for domain, ref in run.reference.items():
        ax.axhline(100 * ref.scores.miou, ls="--", lw=1, color="grey")
        ax.annotate(f"reference{f' [{domain}]' if domain else ''}", (0.01, 100 * ref.scores.miou),
                    xycoords=("axes fraction", "data"), fontsize=7, color="grey", va="bottom")
    ax.set_xlabel("predict p50 latency (ms)" if timing else "file size (MB); run with a bench for latency")
    ax.set_ylabel("mIoU (%)")
    ax.set_title("accuracy vs latency (hollow = failed validation)")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _png(fig)


def class_iou_bars(run: ValidationRun, domain: str | None) -> bytes:
    """Per-class IoU of the reference and of each file on one domain, side by side."""
    plt = _pyplot()
    ref = run.reference[domain]
    series = [("reference", ref.scores.per_class_iou)]
    for result in run.files:
        series += [(result.name, d.scores.per_class_iou) for d in result.domains if d.domain == domain]
    classes = list(ref.scores.classes)
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(classes) * max(1, len(series) / 3)), 3.8))
    positions = np.arange(len(classes))
    for i, (name, iou) in enumerate(series):
        ax.bar(positions + i * width, np.nan_to_num(100 * np.asarray(iou)), width, label=name)
    ax.set_xticks(positions + 0.4 - width / 2)
    ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_title(f"per-class IoU vs reference{f' ({domain})' if domain else ''}")
    ax.legend(fontsize=7)
    return _png(fig)


def colour(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB picture of a class mask; ignore-index and unknown ids are black."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(palette)] = palette[:256]
    return table[np.clip(mask, 0, 255).astype(np.intp)]


def disagreement_overlay(image: np.ndarray, mask: np.ndarray, reference: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The file's mask blended on the image, with pixels that differ from the reference in
    :func:`disagree_colour` (never a class colour of ``palette``)."""
    picture = (0.5 * image + 0.5 * colour(mask, palette)).astype(np.uint8)
    picture[mask != reference] = disagree_colour(palette)[1]
    return picture


def sample_overlays(sample: Sample) -> bytes:
    """One row: image, labels, reference, then each file with its disagreeing pixels highlighted."""
    plt = _pyplot()
    panels = [("image", sample.image), ("labels", colour(sample.label, sample.palette))]
    if sample.reference is not None:
        panels.append(("reference", (0.5 * sample.image + 0.5 * colour(sample.reference, sample.palette)).astype(np.uint8)))
        for name, mask in sample.files.items():
            differ = int(np.count_nonzero(mask != sample.reference))
            highlight = disagree_colour(sample.palette)[0]
            panels.append((f"{name}\n{differ} px differ ({highlight})", disagreement_overlay(sample.image, mask, sample.reference, sample.palette)))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6), squeeze=False)
    for ax, (title, picture) in zip(axes[0], panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.suptitle(sample.name, fontsize=8)
    return _png(fig)


def latency_bars(timing: BenchRun) -> bytes:
    """p50 with p90/p99 whiskers, model call and full predict, per file."""
    plt = _pyplot()
    timed = [r for r in timing.files if r.predict is not None]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(timed)), 3.8))
    positions = np.arange(len(timed))
    for offset, key, label in ((-0.2, "model_call", "model call"), (0.2, "predict", "full predict")):
        stats = [getattr(r, key) for r in timed]
        p50 = np.array([s.p50 for s in stats])
        whisker = np.array([[0.0] * len(stats), [s.p99 - s.p50 for s in stats]])
        ax.bar(positions + offset, p50, 0.4, yerr=whisker, capsize=3, label=f"{label} p50 (bar to p99)")
    ax.set_xticks(positions)
    ax.set_xticklabels([r.name for r in timed], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("ms")
    ax.set_title(f"latency, {timing.threads or 'default'} thread(s), {timing.runs} runs round robin")
    ax.legend(fontsize=7)
    return _png(fig)

"""``write_report``: the run as JSON (versioned schema), a Markdown table and an HTML page,
written together and atomically (all three appear, or none)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgeseg.fileio import atomic_outputs
from edgeseg.validate.bench import MEASURED, BenchRun
from edgeseg.validate.environment import environment
from edgeseg.validate.errors import ValidationSetupError
from edgeseg.validate.results import ValidationRun
from edgeseg.validate.tables import (
    Table, accuracy_table, class_delta_tables, environment_lines, latency_table, reasons,
)

SCHEMA = "edgeseg.validate.report"
# Bump when a field changes meaning or is removed; adding fields keeps the version.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    html: Path


def report_dict(validation: ValidationRun | None, timing: BenchRun | None) -> dict:
    env = timing.environment if timing else environment()
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "environment": env,
        "validation": validation.to_dict() if validation else None,
        "bench": timing.to_dict() if timing else None,
    }


# Markdown syntax that could turn a class name or a file name from a dataset or a model file into a
# link, an image, a code span, emphasis or a new table cell; written backslash-escaped. ("_" is
# left: names such as traffic_light are common, and intraword underscores emphasize nothing.)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|])")
# C0/C1 control characters (ESC starts terminal escape sequences: the Markdown is printed too).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def md_escape(text: object) -> str:
    """``text`` safe in Markdown and on a terminal: HTML tags and entities shown as text (``<`` as
    ``&lt;``), Markdown syntax backslash-escaped, newlines as spaces (a table row stays one line),
    control characters dropped."""
    text = _CONTROL.sub("", str(text))
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _markdown_table(table: Table) -> list[str]:
    headers, rows = table
    lines = ["| " + " | ".join(map(md_escape, headers)) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(map(md_escape, row)) + " |" for row in rows]


def accuracy_markdown(validation: ValidationRun) -> list[str]:
    g = validation.gates
    gates = (f"Gates: {g.describe()}." if validation.reference_path is not None else
             "No reference checkpoint: each file is scored against the labels only, and no gate applies "
             "(give --reference to compare with PyTorch and gate).")
    lines = [
        f"## Accuracy: {validation.verdict if validation.reference_path is not None else 'scored against labels, not gated'}", "",
        f"Reference `{validation.reference_path}`, data {', '.join(validation.data)}, "
        f"{'all' if validation.limit is None else validation.limit} images per domain. {gates}", "",
    ]
    lines += _markdown_table(accuracy_table(validation)) + [""]
    lines += [f"- **{md_escape(n)}** ({md_escape(s)}): {md_escape(r)}" for n, s, r in reasons(validation)]
    for domain, table in class_delta_tables(validation).items():
        lines += ["", f"### Per-class IoU{f' ({md_escape(domain)})' if domain else ''}", ""] + _markdown_table(table)
    return lines + [""]


def latency_markdown(timing: BenchRun) -> list[str]:
    lines = [
        "## Latency", "",
        f"{timing.warmup} warm-up + {timing.runs} timed runs per file, interleaved round robin; "
        f"image: {timing.image}. Cold start and peak RSS: a fresh process per file (import + load + "
        "first predict). p50 is the median run, mean the average: a mean below p50 means a minority "
        "of runs was much faster than the rest (e.g. the backend's worker threads still awake from "
        "the previous call), above p50 that a few runs stalled.", "",
    ]
    lines += _markdown_table(latency_table(timing))
    # Why a file has no timings (it did not load, or its backend cannot run here), as validate says.
    why = [f"- **{md_escape(r.name)}** ({md_escape(r.status)}): {md_escape(r.reason)}"
           for r in timing.files if r.status != MEASURED and r.reason]
    return lines + ([""] + why if why else []) + [""]


def render_markdown(validation: ValidationRun | None, timing: BenchRun | None, env: dict) -> str:
    lines = ["# edgeseg validation report", ""] + [f"- {line}" for line in environment_lines(env)] + [""]
    if validation is not None:
        lines += accuracy_markdown(validation)
    if timing is not None:
        lines += latency_markdown(timing)
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    validation: ValidationRun | None = None,
    bench: BenchRun | None = None,
    name: str = "report",
) -> ReportFiles:
    """Write ``<out_dir>/<name>.json``, ``.md`` and ``.html``; all or none appear."""
    if validation is None and bench is None:
        raise ValidationSetupError("write_report needs a validation run, a bench run, or both")
    from edgeseg.validate.html import render_html

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValidationSetupError(f"--report {out} is a file; give a folder for the report")
    data = report_dict(validation, bench)
    env = data["environment"]
    page = render_html(validation, bench, env)  # draw before writing: a plot error leaves no file
    text = render_markdown(validation, bench, env)
    files = ReportFiles(out / f"{name}.json", out / f"{name}.md", out / f"{name}.html")
    with atomic_outputs(files.json, files.markdown, files.html) as (json_tmp, md_tmp, html_tmp):
        json_tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        md_tmp.write_text(text, encoding="utf-8")
        html_tmp.write_text(page, encoding="utf-8")
    return files

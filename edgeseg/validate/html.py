"""The HTML report: one self-contained page (figures inlined as PNG data URIs), every value
escaped. A small script records on <body> how many figures decoded, for the headless check."""

from __future__ import annotations

import base64
import html

from edgeseg.validate import plots
from edgeseg.validate.bench import BenchRun
from edgeseg.validate.results import ValidationRun
from edgeseg.validate.tables import (
    Table, accuracy_table, class_delta_tables, environment_lines, latency_table, reasons,
)

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
tr.passed td.status { color: #176117; font-weight: bold; }
tr.failed td.status { color: #a00; font-weight: bold; }
tr.cannot td.status { color: #a06000; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
"""
# Counts decoded figures into data attributes: a test reads them from the rendered DOM.
COUNT_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("img");
  var shown = Array.prototype.filter.call(images, function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-rendered", String(shown.length));
});
"""


def _row_class(status: str) -> str:
    return {"passed": "passed", "measured": "passed", "cannot run here": "cannot"}.get(status, "failed")


def render_table(table: Table, table_id: str, status_column: int | None = None) -> str:
    headers, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        css = f' class="{_row_class(row[status_column])}"' if status_column is not None else ""
        cells = "".join(
            f'<td class="status">{html.escape(c)}</td>' if i == status_column else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(validation: ValidationRun | None, timing: BenchRun | None, environment: dict) -> str:
    parts = ["<h1>edgeseg validation report</h1>", "<ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in environment_lines(environment)]
    parts.append("</ul>")
    if validation is not None:
        g = validation.gates
        parts.append(
            f"<h2>Accuracy: {html.escape(validation.verdict)}</h2><p>reference {html.escape(str(validation.reference_path or 'none: labels only, no gate'))}; data "
            f"{html.escape(', '.join(validation.data))}; gates: {html.escape(g.describe())}</p>"
        )
        parts.append(render_table(accuracy_table(validation), "accuracy", status_column=5))
        failing = reasons(validation)
        if failing:
            parts.append("<ul>" + "".join(
                f"<li><b>{html.escape(n)}</b> ({html.escape(s)}): {html.escape(r)}</li>" for n, s, r in failing
            ) + "</ul>")
        parts.append(figure(plots.accuracy_vs_latency(validation, timing), "accuracy vs latency"))
        for domain, table in class_delta_tables(validation).items():
            title = f"Per-class IoU{f' ({domain})' if domain else ''}"
            parts.append(f"<h3>{html.escape(title)}</h3>")
            parts.append(render_table(table, f"classes-{domain or 'all'}"))
            parts.append(figure(plots.class_iou_bars(validation, domain), title))
        parts.append("<h3>Samples: reference vs each file (pixels that differ in the colour named "
                     "above each panel: the one farthest from every class colour)</h3>")
        for samples in validation.samples.values():
            parts += [figure(plots.sample_overlays(s), f"overlay {s.name}") for s in samples]
    if timing is not None:
        parts.append(f"<h2>Latency</h2><p>{timing.warmup} warm-up + {timing.runs} timed runs per file, "
                     f"interleaved round robin; image: {html.escape(timing.image)}</p>")
        parts.append(render_table(latency_table(timing), "latency", status_column=5))
        if any(r.predict for r in timing.files):
            parts.append(figure(plots.latency_bars(timing), "latency"))
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>edgeseg validation report"
        f"</title><style>{STYLE}</style><script>{COUNT_SCRIPT}</script></head><body>"
        + "\n".join(parts) + "</body></html>\n"
    )

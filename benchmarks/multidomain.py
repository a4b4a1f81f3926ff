"""What multi-domain costs: params and multiply-adds of every ``multidomain_*`` model with and
without Domain Attention, beside its single-domain base model.

    nice -n 10 python benchmarks/multidomain.py     # writes benchmarks/results/multidomain.{md,json}

Setting: two domains with 19 classes each (Cityscapes-like label spaces), N = 2 SE adapters per DA
module (one per domain), SE reduction 16. Multiply-adds come from torch.utils.flop_counter at
512x1024 (elementwise ops such as DA's channel re-weighting are not counted, as in the papers);
"one domain" is ``forward(x, domain)``, "all domains" is ``forward_all(x)`` (encoder run once).
No latency column: on the shared 2-core machine this was written on, timings moved by 2x from
run to run. DA's re-weighting is elementwise, so its real cost only shows in a latency run on an
idle device; that measurement is not done here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.models import create_model, list_models
from edgeseg.models.domain_attention import DomainAttention
from edgeseg.models.profile import count_params
from edgeseg.validate.environment import describe, environment

FLOP_SIZE = (512, 1024)
DOMAINS = [["domain_a", [f"a{i}" for i in range(19)]], ["domain_b", [f"b{i}" for i in range(19)]]]


@torch.no_grad()
def gmacs(fn, size: tuple[int, int]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 2e9


def measure(name: str) -> list[dict]:
    base_name = name.removeprefix("multidomain_")
    base = create_model(base_name, num_classes=19).eval()
    rows = [{
        "model": base_name, "variant": "single-domain base", "params_m": count_params(base) / 1e6,
        "da_params_m": 0.0, "head_params_m": None,
        "gmacs_one_domain": gmacs(base, FLOP_SIZE), "gmacs_all_domains": None
    }]
    for with_da in (False, True):
        model = create_model(name, domains=DOMAINS, with_domain_attention=with_da).eval()
        da_params = sum(count_params(m) for m in model.modules() if isinstance(m, DomainAttention))
        rows.append({
            "model": name, "variant": "with DA (N=2)" if with_da else "without DA",
            "params_m": count_params(model) / 1e6, "da_params_m": da_params / 1e6,
            "head_params_m": count_params(model.heads["domain_a"]) / 1e6,
            "gmacs_one_domain": gmacs(model, FLOP_SIZE),
            "gmacs_all_domains": gmacs(model.forward_all, FLOP_SIZE),
        })
    return rows


def to_markdown(rows: list[dict], env: dict) -> str:
    def fmt(v, digits=3):
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [
        "# Multi-domain models: cost of Domain Attention and per-domain heads",
        "",
        f"Two domains x 19 classes, N=2 adapters, reduction 16. GMACs at {FLOP_SIZE[0]}x{FLOP_SIZE[1]} "
        "(torch flop counter; DA's elementwise re-weighting is not counted, its FCs are).",
        f"Machine: {describe(env, ('torch',))}",
        "",
        "| model | variant | params (M) | DA params (M) | one head (M) | GMACs one domain | "
        "GMACs all domains |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {fmt(r['params_m'])} | {fmt(r['da_params_m'])} | "
            f"{fmt(r['head_params_m'])} | {fmt(r['gmacs_one_domain'])} | {fmt(r['gmacs_all_domains'])} |"
        )
    lines += ["", "Reproduce: `nice -n 10 python benchmarks/multidomain.py`", ""]
    return "\n".join(lines)


def main(out_dir: Path = Path(__file__).parent / "results") -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = environment(threads=1)
    rows = [row for name in list_models() if name.startswith("multidomain_") for row in measure(name)]
    for r in rows:
        for key, value in r.items():
            if isinstance(value, float):
                r[key] = round(value, 4)
    write_json_atomic(out_dir / "multidomain.json", {"environment": env, "rows": rows})
    write_text_atomic(out_dir / "multidomain.md", to_markdown(rows, env))
    print(to_markdown(rows, env))


if __name__ == "__main__":
    main()

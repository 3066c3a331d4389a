"""The ablation table: each metric's mean, spread and interval per variant over seeds, and each
variant's difference to the baseline, paired by seed (`neat.evaluation.statistics`)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from neat.evaluation.statistics import paired_test, summarize

__all__ = ["TABLE_METRICS", "markdown", "summary"]

# shown in the table when present, in this order; summary.json holds every metric
TABLE_METRICS = (
    "acc",
    "acc_id",
    "acc_heldout",
    "acc_ood",
    "val_loss",
    "val_bpb",
    "tokens_per_s",
    "peak_rss_mib",
    "params",
)


def summary(rows: Sequence[dict[str, Any]], baseline: str | None = "baseline") -> dict[str, Any]:
    """{"variants": {variant: {metric: Summary dict}}, "vs_baseline": {variant: {metric:
    PairedTest dict}}} from result rows ({variant, seed, metrics})."""
    by_variant: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for row in rows:
        if row["variant"] is not None:
            by_variant[row["variant"]][row["seed"]] = row["metrics"]
    out: dict[str, Any] = {"variants": {}, "vs_baseline": {}}
    for variant, seeds in by_variant.items():
        names = sorted({name for metrics in seeds.values() for name in metrics})
        out["variants"][variant] = {
            name: summarize([m[name] for m in seeds.values() if name in m]).as_dict()
            for name in names
        }
    control = by_variant.get(baseline) if baseline else None
    if control:
        for variant, seeds in by_variant.items():
            if variant == baseline:
                continue
            shared = sorted(set(seeds) & set(control))
            names = sorted(
                {n for s in shared for n in seeds[s]} & {n for s in shared for n in control[s]}
            )
            out["vs_baseline"][variant] = {
                name: paired_test(
                    [seeds[s][name] for s in shared], [control[s][name] for s in shared]
                ).as_dict()
                for name in names
                if all(name in seeds[s] and name in control[s] for s in shared)
            }
    return out


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    text = f"{_number(stats['mean'])}"
    if stats["n"] > 1:
        text += (
            f" ± {_number(stats['std'])} [{_number(stats['ci_low'])}, {_number(stats['ci_high'])}]"
        )
    return text


def markdown(table: dict[str, Any]) -> str:
    """The table: mean ± std [95% interval] per variant; then the paired differences."""
    variants = table["variants"]
    shown = [m for m in TABLE_METRICS if any(m in v for v in variants.values())]
    seeds = {name: max((s["n"] for s in v.values()), default=0) for name, v in variants.items()}
    lines = [
        "| variant | seeds | " + " | ".join(shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for name, stats in variants.items():
        cells = " | ".join(_cell(stats.get(metric)) for metric in shown)
        lines.append(f"| {name} | {seeds[name]} | {cells} |")
    if table["vs_baseline"]:
        lines += [
            "",
            "Difference to the baseline, paired by seed (mean [95% bootstrap interval]; "
            "p: paired t-test / exact sign-flip test)",
            "",
            "| variant | metric | difference | p (t) | p (exact) |",
            "|---|---|---|---|---|",
        ]
        for name, tests in table["vs_baseline"].items():
            for metric in shown:
                test = tests.get(metric)
                if test is None or metric == "params":
                    continue
                lines.append(
                    f"| {name} | {metric} | {_number(test['mean_diff'])} "
                    f"[{_number(test['ci_low'])}, {_number(test['ci_high'])}] | "
                    f"{_number(test['p_t'])} | {_number(test['p_exact'])} |"
                )
    return "\n".join(lines) + "\n"

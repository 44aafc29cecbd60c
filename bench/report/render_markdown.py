"""Markdown: the report's summary.md, containers-vs-vms.md and libvirt-tax.md, and the
verdicts `bench compare`, `bench ab` and `bench history` print (and append to GitHub's
job summary; history.md).

Markdown is what people read in a terminal, a pull request and a CI job's summary, so
every Markdown bench writes is laid out here, from data computed elsewhere: the report
from bench.report.model, the verdicts from bench.judge.compare's Comparison, bench.judge.ab's
AbResult and bench.judge.history's History. Nothing here computes a figure or decides a
verdict; it only chooses words, order and rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.judge import verdict as v
from bench.judge.comparability import host_facts
from bench.model.records import number, unit_of
from bench.model.units import format_bytes, format_seconds
from bench.report.tables import (
    COLUMNS_NOTE,
    POLICY_NOTE,
    TCG_NOTE,
    boundary_note,
    human_column,
    rows_note,
    summary_display,
)

if TYPE_CHECKING:
    from bench.judge.ab import AbResult
    from bench.judge.compare import Comparison
    from bench.judge.history import History
    from bench.report.model import ReportModel
    from bench.report.tax import Tax

TAX_HEADING = "# What libvirt adds, measured\n\n"


# -- the report -------------------------------------------------------------------------


def summary_markdown(model: ReportModel) -> str:
    """summary.md: one Markdown table per run, each headed by its run id and host; the
    differences between the runs' hosts; the isolation boundary; the History section."""
    return (
        _summary(model)
        + _workloads(model)
        + _neighbours(model)
        + _boundary(model)
        + history_section(model.history, model.no_history)
    )


def _workloads(model: ReportModel) -> str:
    view = model.workloads
    if view is None:
        return ""
    from bench.report.workloads import WORKLOADS_NOTE

    section = view.section
    parts = ["", f"## Workloads: runtime overhead against native: {section.run_id}", ""]
    parts += [WORKLOADS_NOTE, ""]
    if section.native is None:
        parts += ["> **Note:** no native platform in this run: no ratios.", ""]
    parts += [view.table.to_markdown(index=False), ""]
    if section.failures:
        parts += ["Workload runs that gave no figures:", ""]
        parts += [f"- {line}" for line in section.failures] + [""]
    return "\n".join(parts)


def _neighbours(model: ReportModel) -> str:
    view = model.neighbours
    if view is None:
        return ""
    from bench.report.neighbours import NEIGHBOURS_NOTE

    section = view.section
    parts = ["", f"## Isolation: noisy neighbours: {section.run_id}", ""]
    parts += [NEIGHBOURS_NOTE, ""]
    if len(view.table):
        parts += [view.table.to_markdown(index=False), ""]
    if section.failures:
        parts += ["Neighbour runs that gave no figure:", ""]
        parts += [f"- {line}" for line in section.failures] + [""]
    return "\n".join(parts)


def _boundary(model: ReportModel) -> str:
    section = model.boundary
    if section is None:
        return ""
    return "\n".join(
        [
            "",
            f"## Isolation boundary, as read: {section.run_id}",
            "",
            boundary_note(section.read, section.capped),
            "",
            section.rows.to_markdown(index=False),
            "",
        ]
    )


def _summary(model: ReportModel) -> str:
    parts = [f"# bench summary: {', '.join(model.run_ids)}", ""]
    if model.tcg:
        parts += [f"> **Note:** {TCG_NOTE}", ""]
    for r in model.frames.runs:
        host = host_facts(r.metadata)
        rows = model.table[model.table["run"] == r.run_id]
        parts += [
            f"## {r.run_id}",
            "",
            f"host `{host.get('hostname')}` ({host.get('cpu_model')}, "
            f"{host.get('cpu_cores')} cores, kernel {host.get('kernel')}), "
            f"status {r.status}, bench {r.metadata.get('bench_version')}",
            "",
            *(f"> **Anomaly:** {line}\n" for line in model.anomalies.get(r.run_id, [])),
            *([f"{model.ready_means[r.run_id]}.", ""] if r.run_id in model.ready_means else []),
            summary_display(rows, drop=("run", "host"))
            .rename(columns=human_column)
            .to_markdown(index=False),
            "",
        ]
    diff = model.host_differences
    if diff is not None:
        parts += [
            "## Differences between the runs' hosts, engines and scenarios",
            "",
            POLICY_NOTE,
            "",
            diff.to_markdown(),
            "",
        ]
    return "\n".join(parts)


def classic_markdown(model: ReportModel) -> str:
    """containers-vs-vms.md: the classic table, one per host, with its notes."""
    runs = model.frames.runs
    r0 = runs[0]
    facts = host_facts(r0.metadata)
    where = (
        f"on `{facts.get('hostname')}` ({facts.get('cpu_model')}, {facts.get('cpu_cores')} cores, "
        f"{format_bytes(number(facts.get('mem_total_bytes')))}, kernel {facts.get('kernel')})"
        if not model.multi
        else f"from {len(runs)} runs"
    )
    parts = [
        "# Containers vs VMs, measured",
        "",
        f"Measured {where} by bench {r0.metadata.get('bench_version')}: "
        f"{', '.join(f'`{run_id}`' for run_id in model.run_ids)}. {COLUMNS_NOTE} "
        f"{rows_note([c.table for c in model.classic])}",
        "",
    ]
    if model.tcg:
        parts += [f"> **Note:** {TCG_NOTE}", ""]
    for classic in model.classic:
        if classic.host is not None:
            parts += [f"## On host `{classic.host}`", ""]
        parts += [classic.table.to_markdown(), ""]
        if classic.n_differs:
            parts += [classic.n_differs, ""]
    for run_id, lines in model.memory_disagreements.items():
        prefix = f"{run_id}: " if model.multi else ""
        parts += [f"> **Memory views disagree:** {prefix}{line}\n" for line in lines]
    return "\n".join(parts)


def history_section(history: History | None, why: str | None, png: str = "history.png") -> str:
    """summary.md's History section: `bench history`'s Markdown and its plot, or the
    one line saying why there is none (nothing for one run)."""
    if history is not None:
        return f"\n{history_markdown(history, heading='##')}\n![history]({png})\n"
    return f"\n## History\n\n{why}\n" if why else ""


def history_markdown(history: History, heading: str = "#") -> str:
    """`bench history`'s verdict (history.md; a section of summary.md under `heading`
    "##"): the rule, a row per series, the verdict in words, a line per series and the
    warnings."""
    rows = history.rows()
    head = list(rows[0]) if rows else []
    lines = [
        f"{heading} bench history: {history.metric}, {history.runs} runs",
        "",
        history.explanation(),
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
        *("| " + " | ".join(r.values()) + " |" for r in rows),
        "",
        f"**{history.verdict_in_words()}**",
        "",
        *(f"- {s.in_words(history.threshold)}" for s in history.series),
    ]
    lines += [f"> warning: {w}" for w in history.warnings]
    return "\n".join(lines) + "\n"


def tax_markdown(tax: Tax) -> str:
    """The libvirt tax's sections: a table per N under each pair's heading."""
    parts = []
    for section in tax.sections:
        parts.append(f"#### {section.heading}\n")
        for df in section.tables:
            parts.append(df.to_markdown(index=False, disable_numparse=True))
            parts.append("")
        parts.extend(section.notes)
        parts.append("")
    return "\n".join(parts)


def tax_file(tax: Tax) -> str:
    """libvirt-tax.md."""
    return TAX_HEADING + tax_markdown(tax)


# -- bench compare ----------------------------------------------------------------------


def compare_markdown(result: Comparison) -> str:
    """`bench compare`'s verdict: a row per (platform, N), the rule, the limits, the
    advice of undecided groups and the warnings."""
    from tabulate import tabulate

    fmt = _formatter(result.metric)
    headers = [
        "platform",
        "N",
        "baseline",
        "current",
        "change",
        "one-sided bound",
        "run spread",
        f"MDE ({v.POWER:.0%} power)",
        "p (Holm)",
        "runs",
        "samples",
        "failed",
        "verdict",
    ]
    rows = []
    for g in result.groups:
        t, f = g.test, g.failures
        rows.append(
            [
                g.platform,
                g.n,
                fmt(g.baseline_geomean) if g.baseline_geomean else "-",
                fmt(g.current_geomean) if g.current_geomean else "-",
                v.pct(t.change) if t else "-",
                f"≥ {v.pct(t.ci_low)} (at {t.alpha:.2g})" if t else "-",
                (f"{t.spread:.1%}" + (" (assumed)" if g.drift_assumed else "")) if t else "-",
                v.pct(t.mde) if t else "-",
                f"{g.p_slower_adjusted:.2g}" if g.p_slower_adjusted is not None else "-",
                f"{g.baseline_runs} → 1",
                f"{g.baseline_samples} → {g.current_samples}",
                f"{f.baseline}/{f.baseline_units} → {f.current}/{f.current_units}" if f else "-",
                g.label,
            ]
        )
    table = tabulate(rows, headers, tablefmt="github", disable_numparse=True)
    k = len(result.regressions)
    outcome = f"**{k} regression{'s' if k != 1 else ''}**" if k else "no regression"
    if result.inconclusive:
        outcome += f" ({len(result.inconclusive)} inconclusive)"
    worse = "slower" if unit_of(result.metric) == "s" else "larger"
    lines = [
        f"### bench compare: `{result.metric}`",
        "",
        f"{len(result.baselines)} baseline run(s) `{'`, `'.join(result.baselines)}` → "
        f"current `{result.current}`",
        "",
        table,
        "",
        f"{outcome}. Runs are the unit: baseline and current are geometric means. A "
        f"regression (time) is p < {result.alpha:g} after Holm's correction over the "
        f"groups and a change {worse} than {v.REGRESSION_FRACTION:g} × "
        f"{result.threshold:.0%}; the bound is the same test's, at the level its p is "
        f"judged at. A regression (failures) is a larger share of failed instances, "
        f"Fisher exact p < {result.alpha:g} after Holm. Inconclusive when the MDE is "
        f"above {result.threshold:.0%}.",
        "",
        result.limits(),
    ]
    for g in result.groups:
        if g.advice:  # why inconclusive, or a regression by failed instances
            lines += ["", f"{g.platform} N={g.n}: {g.advice}"]
    if result.warnings:
        lines += ["", *[f"> warning: {w}" for w in result.warnings]]
    return "\n".join(lines) + "\n"


def _formatter(metric: str) -> Callable[[float], str]:
    """A level of `metric` with its unit."""
    # More digits than elsewhere: levels a few percent apart must not print the same.
    unit = unit_of(metric)
    if unit == "bytes":
        return lambda x: format_bytes(x, decimals=2)
    if unit == "s":
        return lambda x: format_seconds(x, digits=4)
    return lambda x: f"{x:.4g} {unit or ''}".rstrip()


# -- bench ab ---------------------------------------------------------------------------


def ab_markdown(result: AbResult) -> str:
    """`bench ab`'s verdict: a row per gate, the failures' row, the rule, the failures'
    explanation, the advice when inconclusive and the warnings."""
    from tabulate import tabulate

    from bench.judge.ab import CENTER, FAILURES

    rows = []
    for g in result.gates:
        label = g.verdict
        if g.verdict == v.REGRESSION:
            label = f"**REGRESSION ({g.kind})**"
        rows.append(
            [
                g.n,
                g.kind,
                g.test.n,
                v.pct(g.test.change),
                f"≥ {v.pct(g.bound)} (at {g.level:.2g})",
                f"{g.p_holm:.2g}",
                v.pct(g.test.mde) if g.kind == CENTER else "",
                label,
            ]
        )
    f = result.failures
    rows.append(
        [
            "all",
            FAILURES,
            "",
            f"{f.candidate}/{f.candidate_units} vs {f.baseline}/{f.baseline_units}",
            "",
            f"{f.p:.2g}",
            "",
            "**REGRESSION (failures)**" if f.regression else "ok",
        ]
    )
    headers = ["N", "gate", "pairs", "change", "one-sided bound", "p (Holm)"]
    headers += [f"MDE ({v.POWER:.0%} power)", "verdict"]
    table = tabulate(rows, headers, tablefmt="github", disable_numparse=True)
    verdict = result.verdict.upper() if result.verdict == v.REGRESSION else result.verdict
    if result.fired:
        verdict += f" ({', '.join(result.fired)})"
    lines = [
        f"### bench ab: `{result.metric}`",
        "",
        f"run `{result.run_id}`: candidate `{result.candidate}`, baseline "
        f"`{result.baseline}`: **{verdict}**; all {result.test.n} pairs together "
        f"{v.pct(result.test.change)}, MDE of the rule {v.pct(result.mde)}",
        "",
        table,
        "",
        f"A regression is a gate that fires: per N, center (signed-rank over step pairs) "
        f"p < {result.alpha:g} after Holm and a change above "
        f"{v.REGRESSION_FRACTION:g} × {result.threshold:.0%}, or p95 (values above the "
        f"pooled p95, permutation of the pairs) p < {result.alpha:g} after Holm and a "
        f"p95 slower by more than "
        f"{result.threshold:.0%}; or more failed instances (Fisher exact, p < "
        f"{result.alpha:g}). Inconclusive when the rule's MDE is above "
        f"{result.threshold:.0%}.",
    ]
    if f.candidate > f.baseline:
        lines += ["", f.why(result.baseline, result.candidate)]
    if (advice := result.advice()) is not None:
        lines += ["", advice]
    if result.warnings:
        lines += ["", *[f"> warning: {w}" for w in result.warnings]]
    return "\n".join(lines) + "\n"

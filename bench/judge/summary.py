"""The end-of-run summary, computed from the stored raw samples and step records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias, TypedDict, cast

from pydantic import JsonValue

from bench.model import kinds
from bench.model.records import Sample, StepRecord, int_field, metrics, number, str_field, text
from bench.model.stats import percentile_of_sorted

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import ArrayLike, NDArray

    from bench.model.results import Columns

# A stored step row as read (JSON: bench.model.records.StepRecord's fields); its values
# are narrowed where they are read (bench.model.records' accessors).
StepRow: TypeAlias = Mapping[str, JsonValue]
# One summary row: labels (str or None), counts, statistics (float, None when no value),
# the sorted error texts. Its keys are the metrics' declared summary columns, known only
# at run time, so a dict rather than a TypedDict.
SummaryValue: TypeAlias = str | int | float | list[str] | None
SummaryRow: TypeAlias = dict[str, SummaryValue]


class Density(TypedDict):
    """One platform's density search, as density_of() finds it."""

    max_density: int
    limit: str
    limit_detail: str | None


# Host drop and summed PSS further apart than this get a one-line explanation.
MEMORY_DISAGREEMENT = 0.25


def _finite(values: ArrayLike) -> NDArray[np.float64]:
    import numpy as np

    xs = np.asarray(values, dtype=np.float64)
    return xs[~np.isnan(xs)]


def _item(x: float | np.float64) -> float:
    return x.item() if hasattr(x, "item") else x


def _statistic(name: str, values: ArrayLike) -> float | None:
    """A declared statistic (median, p50, p95, max) over the values that are not missing;
    None when none are. Percentiles as bench.model.stats.percentile computes them."""
    import numpy as np

    xs = _finite(values)
    if not len(xs):
        return None
    if name == "max":
        return _item(np.max(xs))
    if name == "median":
        return _item(np.median(xs))
    return _item(percentile_of_sorted(np.sort(xs), 50 if name == "p50" else 95))


def summary_columns() -> list[str]:
    """Every statistic column of a summary row, as bench.model.records declares them."""
    return [
        col
        for model in (Sample, StepRecord)
        for info in metrics(model).values()
        for col in info.summary
    ]


def summarize(
    samples: Columns | Sequence[Mapping[str, object]] | pd.DataFrame,
    steps: Sequence[StepRow] | None = None,
) -> list[SummaryRow]:
    """One row per (host, platform, N) in the order they ran, refused steps included.

    The one place these statistics are computed: the terminal summary and the
    report's summary.csv both come from here. Which statistics: every metric of
    bench.model.records with its declared summary columns (sample metrics over ready
    instances, step metrics over the steps that ran).

    `samples`: row dicts, or a run's samples as columns (bench.model.results.Run.columns: a
    million samples are summarised by column, never as a million dicts; a small run
    without pandas, whose import would be most of its summary's time).
    """
    import numpy as np

    from bench.model.results import float_column, sample_columns

    columns = sample_columns(samples)

    def key(r: StepRow) -> tuple[str | None, str, int]:
        return (text(r.get("host")), str_field(r, "platform"), int_field(r, "n"))

    # Statistics never pool hosts: one row per (host, platform, N), in the order first
    # recorded (steps, then samples).
    order: dict[tuple[str | None, str, int], None] = {}
    step_groups: dict[tuple[str | None, str, int], list[StepRow]] = defaultdict(list)
    for st in steps or []:
        order.setdefault(key(st), None)
        if st.get("status", "ran") == "ran":
            step_groups[key(st)].append(st)
    heads = {key(st): st for st in steps or []}
    # Each sample's group, in the order first seen; a missing host is None.
    members: dict[tuple[str | None, str, int], list[int]] = {}
    keys = zip(
        columns["host"].tolist(), columns["platform"].tolist(), columns["n"].tolist(), strict=True
    )
    for i, (host, platform, n) in enumerate(keys):
        host = host if isinstance(host, str) else None
        members.setdefault((host, platform, int(n)), []).append(i)
    for k in members:
        order.setdefault(k, None)
    ok_all = _bools(columns["ok"])
    numbers = {name: float_column(columns[name]) for name in metrics(Sample)}
    rows = []
    for k in order:
        host, platform, n = k
        at = np.array(members.get(k, []), dtype=np.int64)
        # Ready instances only: one still booting at its timeout is no steady state.
        ok_at = at[ok_all[at]]
        first = _labels_at(columns, int(at[0])) if len(at) else heads[k]
        accels = sorted({a for a in columns["accel"][ok_at].tolist() if isinstance(a, str) and a})
        row: SummaryRow = {
            "platform": platform,
            "host": host,
            "backend": text(first.get("backend")),
            "kind": text(first.get("kind")),
            "accel": ",".join(accels) or None,
            "n": n,
            "samples": len(at),
            "failures": int(len(at) - len(ok_at)),
        }
        for name, info in metrics(Sample).items():
            values = numbers[name][ok_at]
            for column, statistic in info.summary.items():
                row[column] = _statistic(statistic, values)
        for name, info in metrics(StepRecord).items():
            step_values: list[float | None] = [number(r.get(name)) for r in step_groups.get(k, [])]
            if info.per_instance:
                step_values = [v / n if v is not None else None for v in step_values]
            finite = [np.nan if v is None else v for v in step_values]
            for column, statistic in info.summary.items():
                row[column] = _statistic(statistic, finite)
        errors = columns["error"][at].tolist()
        row["errors"] = sorted({e for e in errors if isinstance(e, str) and e})
        rows.append(row)
    return rows


def _bools(values: ArrayLike) -> NDArray[np.bool_]:
    """A column as bool, missing values False."""
    import numpy as np

    column = np.asarray(values)
    if column.dtype == bool:
        return column
    return np.array([v is True or v is np.True_ for v in column.tolist()], dtype=bool)


def _labels_at(columns: Columns, i: int) -> dict[str, str | None]:
    """The backend and kind of one sample (missing values None)."""
    return {c: (v if isinstance(v := columns[c][i], str) else None) for c in ("backend", "kind")}


def density_of(steps: Sequence[StepRow]) -> Density:
    """One platform's density search: the largest N whose every step met every limit,
    and the limit of the first step that broke one ("max": the search reached its max)."""
    bad_ns = {
        int_field(st, "n")
        for st in steps
        if st.get("status", "ran") != "ran" or st.get("failures") or st.get("limit")
    }
    good = [n for st in steps if (n := int_field(st, "n")) not in bad_ns]
    stopper = next((st for st in steps if st.get("limit")), None)
    return {
        "max_density": max(good) if good else 0,
        "limit": (text(stopper["limit"]) if stopper else None) or "max",
        "limit_detail": (
            text(stopper.get("limit_detail")) if stopper else "reached the search's max"
        ),
    }


def density_results(steps: Sequence[StepRow], searches: Mapping[str, object]) -> dict[str, Density]:
    """density_of() for each platform that searched (fixed-count platforms have none).

    `searches` is the run's metadata["searches"]: which platforms searched is decided
    once, by the scenario, when the run is written (bench.model.results upgrades older runs).
    """
    by_platform: dict[str, list[StepRow]] = defaultdict(list)
    for st in steps:
        platform = str_field(st, "platform")
        if platform in searches:
            by_platform[platform].append(st)
    return {platform: density_of(sts) for platform, sts in by_platform.items()}


def memory_disagreements(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """One line per platform whose summed PSS and host drop disagree by > 25% at some N.

    `rows`: summarize()'s, or the report's summary frame's rows (numpy numbers there)."""
    by_platform: dict[str, list[tuple[Mapping[str, object], float]]] = defaultdict(list)
    rose: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        host, pss = (
            _bytes(r, "mem_host_per_instance_bytes"),
            _bytes(r, "mem_pss_per_instance_bytes"),
        )
        platform = cast(str, r["platform"])
        if host is not None and host <= 0:
            rose[platform].append(cast(int, r["n"]))
            continue
        if not host or not pss:
            continue
        gap = abs(host - pss) / max(host, pss)
        if gap > MEMORY_DISAGREEMENT:
            by_platform[platform].append((r, gap))
    lines = []
    for platform, found in by_platform.items():
        host_higher = sum(
            1
            for r, _ in found
            if cast(float, _bytes(r, "mem_host_per_instance_bytes"))
            > cast(float, _bytes(r, "mem_pss_per_instance_bytes"))
        )
        first = found[0][0]
        if host_higher * 2 >= len(found):
            # A sandbox is still a container to the host: cgroups, overlay, the daemons.
            why = (
                "the host drop also counts kernel memory no process owns (page tables, "
                "cgroup and overlay bookkeeping) and the engine daemons' own growth"
                if not kinds.is_vm(cast("str | None", first["kind"]))
                else "the host drop also counts kernel memory (page tables, KVM/TCG "
                "structures)"
                # QEMU launched directly is in PSS already; libvirt's daemons are not.
                + (" and libvirt's own growth" if first.get("backend") != "qemu" else "")
            )
        else:
            why = (
                "PSS counts pages the host already had in use or could reclaim (shared "
                "libraries, cached or KSM-merged pages)"
            )
        ns = ", ".join(f"N={r['n']} ({gap:.0%})" for r, gap in found)
        lines.append(
            f"{platform}: host view and PSS per instance differ by more than "
            f"{MEMORY_DISAGREEMENT:.0%} at {ns}; {why}; at small N the host view is "
            "mostly noise"
        )
    for platform, counts in rose.items():
        lines.append(
            f"{platform}: host MemAvailable rose during the step at "
            f"{', '.join(f'N={n}' for n in counts)} (the kernel reclaimed cache, or other "
            "processes freed memory): the host view there is noise; use PSS or a larger N"
        )
    return lines


def _bytes(row: Mapping[str, object], column: str) -> float | None:
    """A byte statistic of a summary row: a number, or None when none was measured (the
    rows are JSON-like: what they hold is summarize()'s word, not a type's)."""
    return cast("float | None", row[column])

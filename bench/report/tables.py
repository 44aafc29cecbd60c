"""The report's tables, as pandas DataFrames of display strings (the containers-vs-VMs
table, host differences, changes between runs, run facts) and the notes beside them.

bench.report.model calls each once per report; the renderers lay them out. Cells are
already words ("shared with the host (6.18.44)", "1.2 s / 3.4 s (N=4, n=4)"): a table
reads the same in Markdown and in HTML."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from bench.judge import comparability
from bench.judge.comparability import host_facts
from bench.model import kinds
from bench.model.records import number, obj, text
from bench.model.results import Run
from bench.model.units import format_bytes, format_seconds
from bench.report.frame import Frames, platform_order

if TYPE_CHECKING:
    import pandas as pd

    from bench.judge.history import History
    from bench.judge.summary import SummaryRow

COLUMNS_NOTE = (
    "Columns run along the spectrum: containers (the host's kernel), sandboxed "
    "containers (a user-space kernel such as gVisor's between them and the host's), "
    "microVMs (a guest kernel on minimal virtual hardware), then VMs."
)
ROWS_NOTE = (
    "Kernel: the kernel each instance reported at readiness, compared with the host's. "
    "Weight: the image all instances share. Boot: launch call to readiness line. Memory "
    "and disk: median per instance at the largest N measured. N: instances started "
    "together; n: values summarised (ready instances; steps for the host view)."
)
OVERHEAD_NOTE = (
    "Engine's own memory: for a VM its VMM process's RSS less the RSS of its "
    "guest-RAM-sized mapping (Firecracker's method; under TCG it includes QEMU's "
    "translation cache); for a container the RSS of its runtime's processes "
    "(containerd-shim or conmon; under gVisor also its gofer and sandbox, whose memory "
    "holds the workload's). Host kernel slab: growth of /proc/meminfo's Slab over the "
    "step, per instance (what no process's memory shows: dentries, inodes, cgroups, "
    "namespaces)."
)
TCG_NOTE = (
    "VMs ran under TCG (software emulation, accel=tcg): their boot times are many "
    "times slower than under KVM and not representative of VMs on real hardware; "
    "re-run on a host where `bench doctor` reports KVM."
)
POLICY_NOTE = (
    "Policy: `must match` differences make `bench compare` warn (the numbers may move "
    "for that reason alone); `shown` ones are for information."
)
ISOLATION = "isolation (boundary, as read)"
RUNTIME_OVERHEAD = "runtime overhead (ratio to native)"
# Issue 24: memory as the VMM anchors count it. Shown only when a run measured it (runs
# stored before it read neither).
OVERHEAD = "engine's own memory per instance (RSS)"
SLAB = "host kernel slab growth per instance"
USUAL_CLAIMS = {
    "kernel": "containers share the host's kernel; VMs boot their own",
    "runtime": "",
    "weight (image)": "MiBs vs GiBs",
    "boot p50 / p95, smallest N": "milliseconds vs seconds",
    "boot p50 / p95, largest N": "",
    "memory per instance, host view": "MiBs vs hundreds of MiBs",
    "memory per instance, PSS": "",
    OVERHEAD: "Firecracker: < 5 MiB VMM overhead",
    SLAB: "",
    "disk per instance (writable)": "a thin layer vs a whole disk",
    "engine storage per instance": "",
    "density (max N)": "hundreds or thousands vs tens",
    ISOLATION: "strong at process level vs strong at the level of a whole OS",
    # Felter et al. 2014 (IBM): Docker equal to native or better almost everywhere, KVM
    # near native on CPU and memory but about half the random IOPS; Docker's NAT adds
    # network latency; gVisor's guide: its syscalls, file I/O and netstack cost more.
    RUNTIME_OVERHEAD: "containers: near-native (NAT costs network); VMs: a few % CPU, "
    "more on I/O (KVM: about half the random IOPS); gVisor: slower syscalls, I/O, network",
}


def rows_note(classic: list[pd.DataFrame]) -> str:
    """What the classic table's rows mean, with the engine-memory rows' method when some
    table shows them."""
    shown = any(OVERHEAD in t.index or SLAB in t.index for t in classic)
    return f"{ROWS_NOTE} {OVERHEAD_NOTE}" if shown else ROWS_NOTE


def any_tcg(frames: Frames) -> bool:
    s = frames.samples
    # A column no sample filled holds pd.NA, which has no truth value: strings only.
    vm = s["kind"].isin([k for k in s["kind"].dropna().unique() if kinds.is_vm(str(k))])
    return bool((vm & (s["accel"] == "tcg")).any())


def summary_display(summary: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """The summary for reading: rounded, missing values as '-'."""
    df = summary.drop(columns=list(drop))
    out = df.astype(object)
    for col in df.columns:
        if col.endswith("_s"):
            out[col] = [_num(v, 3) for v in df[col]]
        elif col.endswith("_mib"):
            out[col] = [_num(v, 1) for v in df[col]]
        else:
            out[col] = ["-" if _missing(v) else v for v in df[col]]
    return out


def classic_table(frames: Frames, host: str | None = None) -> pd.DataFrame:
    """The classic containers-vs-VMs table, one column per (run, platform), measured:
    platforms along the spectrum from container to VM (frame.platform_order). A
    `runtime` row only when some sample recorded its OCI runtime. `host`: only what ran
    on that host (a report of several hosts has one table per host)."""
    import pandas as pd

    columns: dict[str, dict[str, str]] = {}
    any_runtime = frames.samples["runtime"].notna().any()
    any_overhead = bool(
        frames.samples["vmm_overhead_bytes"].notna().any()
        or frames.samples["runtime_rss_bytes"].notna().any()
    )
    any_slab = bool(frames.steps["slab_growth_bytes"].notna().any())
    samples, summary, steps = frames.samples, frames.summary, frames.steps
    if host is not None:
        samples = samples[samples["host"] == host]
        summary = summary[summary["host"] == host]
        steps = steps[steps["host"] == host]
    rtt = steps.get("rtt_s")
    any_remote = rtt is not None and bool((rtt > 0).any())
    for r in frames.runs:
        facts = obj(r.part("hosts").get(host)) if host is not None else {}
        host_kernel = text((facts or host_facts(r.metadata)).get("kernel"))
        engines = r.part("engines")
        for platform in platform_order([r]):
            s = samples[(samples["run"] == r.run_id) & (samples["platform"] == platform)]
            rows = summary[(summary["run"] == r.run_id) & (summary["platform"] == platform)]
            st = steps[(steps["run"] == r.run_id) & (steps["platform"] == platform)]
            if rows.empty:
                continue
            ok = s[s["ok"] == True]  # noqa: E712
            label = platform if not frames.multi else f"{platform} ({frames.labels[r.run_id]})"
            kind = rows["kind"].iloc[0]
            accel = ",".join(sorted(ok["accel"].dropna().astype(str).unique()))
            runtimes = sorted(ok["runtime"].dropna().astype(str).unique())
            column = {
                "kind": kinds.label(kind),
                "accel": accel or ("native" if not kinds.is_vm(kind) else "-"),
                "kernel": kernel_cell(
                    ok["guest_kernel"].dropna().tolist(), host_kernel, kind, runtimes
                ),
                "weight (image)": _size(obj(engines.get(platform)).get("image_bytes")),
                "boot p50 / p95, smallest N": _boot(rows, smallest=True),
                "boot p50 / p95, largest N": _boot(rows, smallest=False),
                "memory per instance, host view": _mem(rows, "mem_host_per_instance_mib", st),
                "memory per instance, PSS": _mem(rows, "mem_pss_per_instance_mib"),
                "disk per instance (writable)": _mem(rows, "disk_per_instance_mib"),
                "engine storage per instance": _mem(rows, "storage_per_instance_mib"),
                "density (max N)": _density(frames, r.run_id, platform, rows),
            }
            if any_remote:
                # Ready is seen on bench's clock, through the link: a remote boot time
                # includes part of this round trip.
                column = _insert_after(
                    column,
                    "boot p50 / p95, largest N",
                    "round trip to its host (median)",
                    _rtt(steps, r.run_id, platform),
                )
            if any_overhead:
                column = _insert_after(
                    column, "memory per instance, PSS", OVERHEAD, _overhead(rows, kind)
                )
            if any_slab:
                after = OVERHEAD if any_overhead else "memory per instance, PSS"
                column = _insert_after(column, after, SLAB, _mem(rows, "slab_per_instance_mib", st))
            if any_runtime:
                column = _insert_after(
                    column, "kernel", "runtime", runtime_cell(runtimes, obj(engines.get(platform)))
                )
            columns[label] = column
    df = pd.DataFrame(columns)
    df["usual claim"] = [USUAL_CLAIMS.get(k, "") for k in df.index]
    df.index.name = "measured"
    return df


def n_differs_note(table: pd.DataFrame) -> str | None:
    """Why the memory and disk rows compare different N, when they do: each platform
    is shown at the largest N it ran, and the scenario gave the platforms different
    counts (per-instance memory falls as N grows and shared pages spread)."""
    import re

    rows = [
        "memory per instance, host view",
        "memory per instance, PSS",
        "disk per instance (writable)",
    ]
    found: dict[str, str] = {}
    for column in table.columns:
        for row in rows:
            m = re.search(r"\(N=(\d+)", str(table.at[row, column])) if row in table.index else None
            if m:
                found.setdefault(column, m.group(1))
    if len(set(found.values())) < 2:
        return None
    ns = ", ".join(f"{c} N={n}" for c, n in found.items())
    return (
        f"The memory and disk rows compare different N ({ns}): each platform is shown at "
        "the largest N it ran, and the scenario's `counts` differ between platforms. "
        "Per-instance memory falls as N grows (shared pages spread over more instances), "
        "so compare like for like in the summary table, at an N both ran."
    )


HUMAN_COLUMNS = {
    "run": "run",
    "host": "host",
    "platform": "platform",
    "backend": "backend",
    "kind": "kind",
    "accel": "accel",
    "n": "N",
    "samples": "instances (n)",
    "failures": "failed",
    "ready_p50_s": "ready p50 (s)",
    "ready_p95_s": "ready p95 (s)",
    "ready_max_s": "ready max (s)",
    "mem_host_per_instance_mib": "memory, host view (MiB)",
    "mem_pss_per_instance_mib": "memory, PSS (MiB)",
    "mem_engine_per_instance_mib": "memory, engine view (MiB)",
    "mem_vmm_overhead_per_instance_mib": "memory, VMM less guest RAM (MiB)",
    "mem_runtime_per_instance_mib": "memory, runtime processes (MiB)",
    "slab_per_instance_mib": "host slab growth (MiB)",
    "disk_per_instance_mib": "disk, writable (MiB)",
    "storage_per_instance_mib": "engine storage (MiB)",
    "max_density": "max density",
    "density_limit": "stopped by",
}


def human_column(column: str) -> str:
    """A column name for people: `ready_p95_s` reads "ready p95 (s)"."""
    if column in HUMAN_COLUMNS:
        return HUMAN_COLUMNS[column]
    for suffix, unit in (("_s", "s"), ("_mib", "MiB"), ("_bytes", "bytes")):
        if column.endswith(suffix):
            return f"{column.removesuffix(suffix).replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


HOST_LABELS = {
    "hostname": "host name",
    "cpu_model": "CPU",
    "cpu_cores": "CPU cores (logical)",
    "cpu_physical_cores": "CPU cores (physical)",
    "mem_total_bytes": "memory",
    "kernel": "kernel",
    "os": "OS",
    "arch": "architecture",
    "kvm_device": "/dev/kvm present",
    "cgroup_version": "cgroup version",
    "bench_version": "bench version",
}


def memory_disagreements(frames: Frames) -> dict[str, list[str]]:
    """Run id -> why its host view and PSS disagree (bench.judge.summary's explanation, the one
    `bench run` prints), for runs where they do."""
    from bench.judge.summary import memory_disagreements as explain

    out = {}
    for r in frames.runs:
        rows = frames.summaries[r.run_id]
        by_host: dict[str | None, list[SummaryRow]] = {}
        for row in rows:
            by_host.setdefault(text(row.get("host")), []).append(row)
        lines = []
        for host, host_rows in by_host.items():
            prefix = f"{host}: " if frames.multi_host and host else ""
            lines += [prefix + line for line in explain(host_rows)]
        if lines:
            out[r.run_id] = lines
    return out


def _rtt(steps: pd.DataFrame, run_id: str, platform: str) -> str:
    own = steps[(steps["run"] == run_id) & (steps["platform"] == platform)]["rtt_s"].dropna()
    if own.empty:
        return "-"
    median = float(own.median())
    return "0 (this machine)" if median == 0 else f"{median * 1000:.2f} ms"


def kernel_cell(
    guest_kernels: list[str],
    host_kernel: str | None,
    kind: str | None = None,
    runtimes: list[str] | None = None,
) -> str:
    """Whose kernel a platform's instances ran, from the release each reported at
    readiness (`kernel=`) against the host's: shared with the host, gVisor's (a
    sandbox's runtime) own, the guest's own, or mixed."""
    kernels = sorted(set(guest_kernels))
    if not kernels:
        return "not reported"
    listed = ", ".join(kernels)
    if not host_kernel:
        return f"{listed} (the host's was not recorded)"
    if kernels == [host_kernel]:
        return f"shared with the host ({host_kernel})"
    if host_kernel not in kernels:
        return f"{_kernel_owner(kind, runtimes or [])} ({listed})"
    return f"mixed ({listed}; host {host_kernel})"


def _kernel_owner(kind: str | None, runtimes: list[str]) -> str:
    """Who the kernel that is not the host's belongs to, as the kernel row names it."""
    if kind == kinds.SANDBOX:
        projects = {kinds.runtime_project(r) or r for r in runtimes}
        return f"{projects.pop()}'s own" if len(projects) == 1 else "the sandbox's own"
    if kinds.is_vm(kind):
        return "guest's own"
    return "own"  # a container that did not see the host's kernel: said as measured


def runtime_cell(runtimes: list[str], engine: Mapping[str, object]) -> str:
    """The OCI runtime(s) a platform's instances ran under, with the project behind a
    sandbox's (runsc: gVisor) and the version the engine recorded."""
    if not runtimes:
        return "-"
    names = []
    for r in runtimes:
        # The engine records the version of the one runtime its platform asked for.
        version = engine.get("runtime_version") if engine.get("runtime") == r else None
        project = kinds.runtime_project(r)
        names.append(r + (f" {version}" if version else "") + (f" ({project})" if project else ""))
    return ", ".join(names)


def _insert_after(row: dict[str, str], key: str, new: str, value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in row.items():
        out[k] = v
        if k == key:
            out[new] = value
    return out


def host_differences(
    frames: Frames, found: list[comparability.Mismatch] | None = None
) -> pd.DataFrame | None:
    """What differs between the runs (rows) per run (columns), or None: the mismatches
    `bench compare` warns about ("must match") and the facts merely shown ("shown").
    `found`: the runs' mismatches (comparability.mismatches), when already known."""
    import pandas as pd

    if not frames.multi:
        return None
    if found is None:
        found = mismatches(frames)
    if not found:
        return None
    labels = [frames.labels[r.run_id] for r in frames.runs]
    rows = {
        m.label: [_fact(m.key, v) for v in m.values]
        + ["must match" if m.severity == comparability.WARNING else "shown"]
        for m in found
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*labels, "policy"])


def mismatches(frames: Frames) -> list[comparability.Mismatch]:
    """What differs between the runs' hosts, engines and scenarios (comparability)."""
    return comparability.mismatches([r.metadata for r in frames.runs], accels=run_accels(frames))


def run_accels(frames: Frames) -> list[dict[str, list[str]]]:
    """Per run, the accels its samples report per platform."""
    s = frames.samples
    return [
        {
            str(p): g["accel"].dropna().astype(str).unique().tolist()
            for p, g in s[s["run"] == r.run_id].groupby("platform", sort=False)
        }
        for r in frames.runs
    ]


def _fact(key: str, value: object) -> str:
    if key.endswith("_bytes") and isinstance(value, int | float) and not isinstance(value, bool):
        return format_bytes(value)
    return str(value)


def run_metadata(frames: Frames) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Per run: (run id, run and host facts, engine facts per platform) as DataFrames of
    strings, rows labelled for people (`mem_total_bytes` is "memory"). A run on several
    hosts has one column per host."""
    import pandas as pd

    out = []
    for r in frames.runs:
        hosts = {key: obj(facts) for key, facts in r.part("hosts").items()}
        if len(hosts) < 2:
            hosts = {"value": host_facts(r.metadata)}
        run_facts = {
            "status": r.status,
            "started": r.metadata.get("started_at"),
            "finished": r.metadata.get("finished_at"),
            "scenario": r.metadata.get("scenario_path"),
            "scenario sha256": r.metadata.get("scenario_sha256") or "",
        }
        columns = {}
        for key, host in hosts.items():
            facts = dict(run_facts)
            for k in comparability.HOST_FACTS:
                if k in host:
                    v = host[k]
                    facts[HOST_LABELS.get(k, k)] = (
                        format_bytes(number(v)) if k.endswith("_bytes") else v
                    )
            columns[key] = facts
        host_df = pd.DataFrame(columns).astype(object)
        host_df = host_df.where(host_df.notna(), "-").astype(str)
        engines = r.part("engines")
        # Platforms in the tables' order (along the spectrum), not the scenario's.
        engines = {p: engines[p] for p in platform_order([r]) if p in engines} | engines
        eng_df = pd.DataFrame(engines).astype(object).where(pd.DataFrame(engines).notna(), "-")
        for row in eng_df.index:
            if str(row).endswith("_bytes"):
                eng_df.loc[row] = [
                    format_bytes(v) if isinstance(v, int | float) else v for v in eng_df.loc[row]
                ]
        eng_df.index = [_engine_label(str(i)) for i in eng_df.index]
        out.append((r.run_id, host_df, eng_df.astype(str)))
    return out


def _engine_label(key: str) -> str:
    """`image_bytes` reads "image size", `docker_version` "docker version"."""
    if key.endswith("_bytes"):
        return key.removesuffix("_bytes").replace("_", " ") + " size"
    return key.replace("_", " ")


def _missing(v: object) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))  # type: ignore[call-overload]  # any cell: pandas decides
    except (TypeError, ValueError):  # a list or an array: a value, not a missing one
        return False


def _num(v: object, digits: int) -> str:
    if _missing(v) or not math.isfinite(x := float(cast(float, v))):
        return "-"
    return f"{x:.{digits}f}"


def _size(v: object) -> str:
    return format_bytes(v) if isinstance(v, int | float) else "not recorded"


def _secs(v: float) -> str:
    return "-" if _missing(v) else format_seconds(v)


def _boot(rows: pd.DataFrame, smallest: bool) -> str:
    measured = rows.dropna(subset=["ready_p50_s"])
    if measured.empty:
        return "no instance became ready"
    row = measured.iloc[0] if smallest else measured.iloc[-1]
    n = int(row["samples"] - row["failures"])
    return f"{_secs(row['ready_p50_s'])} / {_secs(row['ready_p95_s'])} (N={row['n']}, n={n})"


def _mem(rows: pd.DataFrame, column: str, steps: pd.DataFrame | None = None) -> str:
    measured = rows.dropna(subset=[column])
    if measured.empty:
        return "not measured"
    row = measured.iloc[-1]
    # The host view is one figure per step that ran; the others one per ready instance.
    if steps is not None:
        n = int(((steps["n"] == row["n"]) & (steps["status"] == "ran")).sum())
    else:
        n = int(row["samples"] - row["failures"])
    return f"{format_bytes(row[column] * 2**20)} (N={row['n']}, n={n})"


def _overhead(rows: pd.DataFrame, kind: str) -> str:
    """The engine's own memory: a VM's VMM less its guest's RAM, a container's runtime
    processes (bench.measurements.process_memory), each named for what it counts."""
    if kinds.is_vm(kind):
        cell = _mem(rows, "mem_vmm_overhead_per_instance_mib")
        return cell if cell == "not measured" else f"VMM less guest RAM: {cell}"
    cell = _mem(rows, "mem_runtime_per_instance_mib")
    return cell if cell == "not measured" else f"runtime processes: {cell}"


def _density(frames: Frames, run_id: str, platform: str, rows: pd.DataFrame) -> str:
    if (run_id, platform) not in frames.density:
        return "not a density run"
    n, limit = rows["max_density"].iloc[0], rows["density_limit"].iloc[0]
    mode = frames.density[(run_id, platform)].get("mode", "restart")  # older runs: restart
    if limit == "max":
        return f"≥ {n} (the search's max; no limit reached; {mode} mode)"
    return f"{n} (stopped by {limit}; {mode} mode)"


def run_changes(frames: Frames) -> pd.DataFrame | None:
    """For several runs: ready p50 per (host, platform, N) in each run, and the last
    run's change against the first (None for one run, or when no group is shared)."""
    import pandas as pd

    if not frames.multi:
        return None
    s = frames.summary.dropna(subset=["ready_p50_s"])
    first, last = frames.runs[0].run_id, frames.runs[-1].run_id
    keys = ["host", "platform", "n"] if frames.multi_host else ["platform", "n"]
    rows = []
    for key, g in s.groupby(keys, sort=False):
        by_run = dict(zip(g["run"], g["ready_p50_s"], strict=True))
        counts = dict(zip(g["run"], g["samples"] - g["failures"], strict=True))
        if first not in by_run or last not in by_run:
            continue
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for r in frames.runs:
            v = by_run.get(r.run_id)
            cell = f"{format_seconds(v)} (n={int(counts[r.run_id])})" if v is not None else "-"
            row[f"ready p50, {frames.labels[r.run_id]}"] = cell
        row["change"] = f"{by_run[last] / by_run[first] - 1:+.1%}"
        rows.append(row)
    if not rows:
        return None
    return pd.DataFrame(rows).rename(columns={"n": "N"})


def compare_verdict(
    frames: Frames, found: list[comparability.Mismatch] | None = None
) -> tuple[pd.DataFrame | None, list[str]]:
    """`bench compare` of the runs (the last one current, the others its baselines), as
    a table, with what the reader must know; or (None, why not) when the runs are not
    comparable. Statistics are bench.judge.compare's: never pooled across hosts. `found`:
    the runs' mismatches, when already known."""

    import pandas as pd

    from bench.judge import verdict as v
    from bench.judge.compare import compare_runs
    from bench.model.errors import BenchError

    if not frames.multi:
        return None, []
    if found is None:
        found = mismatches(frames)
    must = [m for m in found if m.severity == comparability.WARNING]
    if must:
        return None, [
            "No `bench compare` verdict: the runs differ in what must match ("
            + "; ".join(m.label for m in must)
            + "), so a change may come from that alone."
        ]
    rows, notes = [], []
    for host in frames.hosts if frames.hosts else [None]:

        def on(run: Run, host: str | None = host) -> Run:
            if host is None or not frames.multi_host:
                return run
            return Run(
                run.dir,
                run.metadata,
                [x for x in run.samples if x.get("host") == host],
                [x for x in run.steps if x.get("host") == host],
                run.notes,
            )

        runs = [on(r) for r in frames.runs]
        try:
            result = compare_runs(runs[:-1], runs[-1])
        except BenchError as e:
            notes.append(f"No `bench compare` verdict{f' on {host}' if host else ''}: {e}")
            continue
        for g in result.groups:
            t = g.test
            row: dict[str, object] = {"host": host} if frames.multi_host else {}
            row.update(
                {
                    "platform": g.platform,
                    "N": g.n,
                    "baseline": format_seconds(g.baseline_geomean),
                    "current": format_seconds(g.current_geomean),
                    "change": v.pct(t.change) if t else "-",
                    "interval": f"{v.pct(t.ci_low)} … {v.pct(t.ci_high)}" if t else "-",
                    "runs": f"{g.baseline_runs} → 1",
                    "n": f"{g.baseline_samples} → {g.current_samples}",
                    "verdict": g.verdict,
                }
            )
            rows.append(row)
            if g.advice:
                notes.append(f"{g.platform} N={g.n}: {g.advice}")
        if not frames.multi_host:
            break
    if not rows:
        return None, notes
    notes.insert(
        0,
        f"`bench compare` of the last run against the {len(frames.runs) - 1} before it "
        "(runs are the unit; geometric means of ready time; regression only beyond the "
        "threshold and the run-to-run drift).",
    )
    return pd.DataFrame(rows), notes


def run_history(
    frames: Frames, found: list[comparability.Mismatch] | None = None
) -> tuple[History | None, str | None]:
    """`bench history` of the report's runs: (History, None) when they are enough runs
    of one scenario to form one; (None, why not) for several runs that are not; (None,
    None) for one run (a report of one run has no history to speak of). Levels are made
    from the runs the report has read (bench.judge.history.summary_of: what the index stores),
    so no run is read twice."""
    from bench.judge import history as h
    from bench.model.errors import BenchError

    if not frames.multi:
        return None, None
    names = sorted({str(r.part("scenario").get("name")) for r in frames.runs})
    if len(names) > 1:
        return None, (
            f"No history: the runs are of {len(names)} scenarios ({', '.join(names)}); a "
            "history follows one scenario's runs (give `bench report` those alone, or run "
            "`bench history --scenario NAME`)."
        )
    if len(frames.runs) < h.MIN_RUNS:
        return None, (
            f"No history: {len(frames.runs)} runs of {names[0]}; `bench history` judges "
            f"{h.MIN_RUNS} runs or more (its noise scale needs a few runs)."
        )
    if found is None:
        found = mismatches(frames)
    try:
        summaries = [h.summary_of(r, h.DEFAULT_METRIC) for r in frames.runs]
        return h.history_of(summaries, found=found), None
    except BenchError as e:
        return None, f"No history: {e}"


def history_table(history: History) -> pd.DataFrame:
    """The history's table (bench.judge.history.History.rows) as a DataFrame."""
    import pandas as pd

    return pd.DataFrame(history.rows())


def boundary_note(read: int, capped: bool) -> str:
    """What the isolation-boundary table is, for Markdown and HTML alike."""
    of = f" (from the first {read} instances of the run)" if capped else ""
    return (
        "Read from each ready instance's host processes (/proc: seccomp, capabilities, "
        "namespaces, uid map), the kernel that answered it and a VM's devices; a fact "
        f"bench could not read says why, it is never assumed from the platform's kind{of}."
    )


def with_isolation(
    table: pd.DataFrame,
    boundary: pd.DataFrame | None,
    worst: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The containers-vs-VMs table with its isolation row (before density, as in the
    primer's table): per platform column, the boundary its instances were read to have,
    then its worst noisy-neighbour slowdown (bench.report.neighbours) when measured.
    Columns neither has a platform for (another run's) stay empty."""
    import pandas as pd

    by_platform = (
        {str(r["platform"]): r for _, r in boundary.iterrows()} if boundary is not None else {}
    )
    worst = worst or {}

    def cell(platform: str) -> str:
        parts = [_isolation_cell(by_platform[platform])] if platform in by_platform else []
        if platform in worst:
            parts.append(worst[platform])
        return "; ".join(parts)

    cells = [cell(str(c)) for c in table.columns if c != "usual claim"]
    row = pd.DataFrame(
        [[*cells, USUAL_CLAIMS[ISOLATION]]], columns=table.columns, index=[ISOLATION]
    )
    at = list(table.index).index("density (max N)") if "density (max N)" in table.index else None
    parts = [table, row] if at is None else [table.iloc[:at], row, table.iloc[at:]]
    out = pd.concat(parts)
    out.index.name = table.index.name
    return out


def with_runtime_overhead(table: pd.DataFrame, cells: dict[str, str]) -> pd.DataFrame:
    """The containers-vs-VMs table with its runtime-overhead row (after the isolation row
    when there is one, else before density): per platform column, its workloads' ratios
    to native (bench.report.workloads.overhead_cells). Columns with no workloads stay empty."""
    import pandas as pd

    row = pd.DataFrame(
        [
            [cells.get(str(c), "") for c in table.columns if c != "usual claim"]
            + [USUAL_CLAIMS[RUNTIME_OVERHEAD]]
        ],
        columns=table.columns,
        index=[RUNTIME_OVERHEAD],
    )
    index = list(table.index)
    at = index.index("density (max N)") if "density (max N)" in index else None
    if ISOLATION in index:
        at = index.index(ISOLATION) + 1
    parts = [table, row] if at is None else [table.iloc[:at], row, table.iloc[at:]]
    out = pd.concat(parts)
    out.index.name = table.index.name
    return out


def _isolation_cell(row: pd.Series) -> str:
    """One platform's boundary in words: who answers its system calls, then the host
    process between it and the host with its confinement."""
    answered = str(row["system calls answered by"])
    process = str(row["host process"]).split(";")[0]
    if process.startswith("not read"):
        # Nothing of the process could be read: its confinement facts would each repeat
        # the one reason (a native instance: the backend names no host process).
        return f"{answered}; host process {process}"
    caps = str(row["capabilities"]).split(" ")[0]
    namespaces = str(row["namespaces not shared with the host"])
    return (
        f"{answered}; {process}, user {row['user']}: seccomp {row['seccomp']}, "
        f"{caps} capabilities, namespaces of its own: {namespaces}"
    )

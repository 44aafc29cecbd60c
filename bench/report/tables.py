"""The report's tables, as pandas DataFrames, and their Markdown renderings."""

from __future__ import annotations

import math
from typing import Any

from bench import comparability, kinds
from bench.comparability import host_facts
from bench.report.frame import Frames, platform_order
from bench.units import format_bytes, format_seconds

COLUMNS_NOTE = (
    "Columns run along the spectrum: containers (the host's kernel), sandboxed "
    "containers (a user-space kernel such as gVisor's between them and the host's), "
    "microVMs (a guest kernel on minimal virtual hardware), then VMs."
)
ROWS_NOTE = (
    "Kernel: the kernel each instance reported at readiness, compared with the host's. "
    "Weight: the image all instances share. Boot: launch call to readiness line. Memory "
    "and disk: median per instance at the largest N measured."
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
USUAL_CLAIMS = {
    "kernel": "containers share the host's kernel; VMs boot their own",
    "runtime": "",
    "weight (image)": "MiBs vs GiBs",
    "boot p50 / p95, smallest N": "milliseconds vs seconds",
    "boot p50 / p95, largest N": "",
    "memory per instance, host view": "MiBs vs hundreds of MiBs",
    "memory per instance, PSS": "",
    "disk per instance (writable)": "a thin layer vs a whole disk",
    "engine storage per instance": "",
    "density (max N)": "hundreds or thousands vs tens",
}


def any_tcg(frames: Frames) -> bool:
    s = frames.samples
    # A column no sample filled holds pd.NA, which has no truth value: strings only.
    vm = s["kind"].map(lambda k: isinstance(k, str) and kinds.is_vm(k)).astype(bool)
    return bool((vm & (s["accel"] == "tcg")).any())


def anomalies(frames: Frames) -> dict[str, list[str]]:
    """Run id -> its phase-anomaly notes (bench.anomalies), for runs that have some."""
    from bench.anomalies import anomaly_notes

    notes = {r.run_id: anomaly_notes(r.samples) for r in frames.runs}
    return {run_id: lines for run_id, lines in notes.items() if lines}


def summary_display(summary: Any, drop: tuple[str, ...] = ()) -> Any:
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


def summary_markdown(frames: Frames) -> str:
    """One Markdown table per run, each headed by its run id and host."""
    parts = [f"# bench summary: {', '.join(r.run_id for r in frames.runs)}", ""]
    if any_tcg(frames):
        parts += [f"> **Note:** {TCG_NOTE}", ""]
    odd = anomalies(frames)
    for r in frames.runs:
        host = host_facts(r.metadata)
        rows = frames.table[frames.table["run"] == r.run_id]
        parts += [
            f"## {r.run_id}",
            "",
            f"host `{host.get('hostname')}` ({host.get('cpu_model')}, "
            f"{host.get('cpu_cores')} cores, kernel {host.get('kernel')}), "
            f"status {r.status}, bench {r.metadata.get('bench_version')}",
            "",
            *(f"> **Anomaly:** {line}\n" for line in odd.get(r.run_id, [])),
            summary_display(rows, drop=("run", "host")).to_markdown(index=False),
            "",
        ]
    diff = host_differences(frames)
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


def classic_table(frames: Frames) -> Any:
    """The classic containers-vs-VMs table, one column per (run, platform), measured:
    platforms along the spectrum from container to VM (frame.platform_order). A
    `runtime` row only when some sample recorded its OCI runtime."""
    import pandas as pd

    columns: dict[str, dict[str, str]] = {}
    any_runtime = frames.samples["runtime"].notna().any()
    rtt = frames.steps.get("rtt_s")
    any_remote = rtt is not None and bool((rtt > 0).any())
    for r in frames.runs:
        host_kernel = host_facts(r.metadata).get("kernel")
        engines = r.metadata.get("engines", {})
        for platform in platform_order([r]):
            s = frames.samples[
                (frames.samples["run"] == r.run_id) & (frames.samples["platform"] == platform)
            ]
            rows = frames.summary[
                (frames.summary["run"] == r.run_id) & (frames.summary["platform"] == platform)
            ]
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
                "weight (image)": _size(engines.get(platform, {}).get("image_bytes")),
                "boot p50 / p95, smallest N": _boot(rows, smallest=True),
                "boot p50 / p95, largest N": _boot(rows, smallest=False),
                "memory per instance, host view": _mem(rows, "mem_host_per_instance_mib"),
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
                    _rtt(frames.steps, r.run_id, platform),
                )
            if any_runtime:
                column = _insert_after(
                    column, "kernel", "runtime", runtime_cell(runtimes, engines.get(platform, {}))
                )
            columns[label] = column
    df = pd.DataFrame(columns)
    df["usual claim"] = [USUAL_CLAIMS.get(k, "") for k in df.index]
    df.index.name = "measured"
    return df


def _rtt(steps: Any, run_id: str, platform: str) -> str:
    own = steps[(steps["run"] == run_id) & (steps["platform"] == platform)]["rtt_s"].dropna()
    if own.empty:
        return "-"
    median = float(own.median())
    return "0 (this machine)" if median == 0 else f"{median * 1000:.2f} ms"


def classic_markdown(frames: Frames) -> str:
    r0 = frames.runs[0]
    host = host_facts(r0.metadata)
    where = (
        f"on `{host.get('hostname')}` ({host.get('cpu_model')}, {host.get('cpu_cores')} cores, "
        f"{format_bytes(host.get('mem_total_bytes'))}, kernel {host.get('kernel')})"
        if not frames.multi
        else f"from {len(frames.runs)} runs"
    )
    parts = [
        "# Containers vs VMs, measured",
        "",
        f"Measured {where} by bench {r0.metadata.get('bench_version')}: "
        f"{', '.join(f'`{r.run_id}`' for r in frames.runs)}. {COLUMNS_NOTE} "
        f"{ROWS_NOTE}",
        "",
    ]
    if any_tcg(frames):
        parts += [f"> **Note:** {TCG_NOTE}", ""]
    parts += [classic_table(frames).to_markdown(), ""]
    return "\n".join(parts)


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


def runtime_cell(runtimes: list[str], engine: dict[str, Any]) -> str:
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


def host_differences(frames: Frames) -> Any:
    """What differs between the runs (rows) per run (columns), or None: the mismatches
    `bench compare` warns about ("must match") and the facts merely shown ("shown")."""
    import pandas as pd

    if not frames.multi:
        return None
    found = comparability.mismatches([r.metadata for r in frames.runs], accels=_accels(frames))
    if not found:
        return None
    labels = [frames.labels[r.run_id] for r in frames.runs]
    rows = {
        m.label: [_fact(m.key, v) for v in m.values]
        + ["must match" if m.severity == comparability.WARNING else "shown"]
        for m in found
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*labels, "policy"])


def _accels(frames: Frames) -> list[dict[str, list[str]]]:
    """Per run, the accels its samples report per platform."""
    s = frames.samples
    return [
        {
            p: g["accel"].dropna().astype(str).unique().tolist()
            for p, g in s[s["run"] == r.run_id].groupby("platform", sort=False)
        }
        for r in frames.runs
    ]


def _fact(key: str, value: Any) -> str:
    if key.endswith("_bytes") and isinstance(value, int | float) and not isinstance(value, bool):
        return format_bytes(value)
    return str(value)


def run_metadata(frames: Frames) -> list[tuple[str, Any, Any]]:
    """Per run: (run id, host facts, engine facts per platform) as DataFrames."""
    import pandas as pd

    out = []
    for r in frames.runs:
        host = host_facts(r.metadata)
        facts = {
            "status": r.status,
            "started": r.metadata.get("started_at"),
            "finished": r.metadata.get("finished_at"),
            "scenario": r.metadata.get("scenario_path"),
            "scenario sha256": (r.metadata.get("scenario_sha256") or "")[:16],
            **{k: host.get(k) for k in comparability.HOST_FACTS if k in host},
        }
        if "mem_total_bytes" in facts:
            facts["mem_total_bytes"] = format_bytes(facts["mem_total_bytes"])
        host_df = pd.DataFrame({"value": facts}).astype(str)
        engines = r.metadata.get("engines", {})
        # Platforms in the tables' order (along the spectrum), not the scenario's.
        engines = {p: engines[p] for p in platform_order([r]) if p in engines} | engines
        eng_df = pd.DataFrame(engines).astype(object).where(pd.DataFrame(engines).notna(), "-")
        if "image_bytes" in eng_df.index:
            eng_df.loc["image_bytes"] = [
                format_bytes(v) if isinstance(v, int | float) else v
                for v in eng_df.loc["image_bytes"]
            ]
        out.append((r.run_id, host_df, eng_df.astype(str)))
    return out


def _missing(v: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # a list or an array: a value, not a missing one
        return False


def _num(v: Any, digits: int) -> str:
    if _missing(v) or not math.isfinite(float(v)):
        return "-"
    return f"{float(v):.{digits}f}"


def _size(v: Any) -> str:
    return format_bytes(v) if isinstance(v, int | float) else "not recorded"


def _secs(v: float) -> str:
    return "-" if _missing(v) else format_seconds(v)


def _boot(rows: Any, smallest: bool) -> str:
    measured = rows.dropna(subset=["ready_p50_s"])
    if measured.empty:
        return "no instance became ready"
    row = measured.iloc[0] if smallest else measured.iloc[-1]
    return f"{_secs(row['ready_p50_s'])} / {_secs(row['ready_p95_s'])} (N={row['n']})"


def _mem(rows: Any, column: str) -> str:
    measured = rows.dropna(subset=[column])
    if measured.empty:
        return "not measured"
    row = measured.iloc[-1]
    return f"{format_bytes(row[column] * 2**20)} (N={row['n']})"


def _density(frames: Frames, run_id: str, platform: str, rows: Any) -> str:
    if (run_id, platform) not in frames.density:
        return "not a density run"
    n, limit = rows["max_density"].iloc[0], rows["density_limit"].iloc[0]
    if limit == "max":
        return f"≥ {n} (the search's max; no limit reached)"
    return f"{n} (stopped by {limit})"

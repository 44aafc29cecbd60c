"""The libvirt tax: what libvirt adds to a VM, from a run that booted one guest both ways.

    libvirt_tax(frames) -> Tax(table, sections, pairs, notes) | None

A run holds a tax pair when it has a `qemu` platform (QEMU launched directly) and a
`libvirt` platform booting the same guest: same boot source, memory, vCPUs, accel and
machine (libvirt's is `pc` unless named: bench's domain XML names none and libvirt's
x86_64 default is pc). The direct guest's kernel command line may differ only by the
`tsc_early_khz=` the qemu backend adds to a microvm under TCG (a note says so).

For each N and measure, the table gives both platforms' medians and the tax (libvirt
minus direct QEMU), each with a 95% interval from a bootstrap over STEPS: the N
instances of a step share the host's state of that moment, so the step, not the
instance, is the unit that is resampled (an interval needs two steps or more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pydantic import JsonValue

from bench.model.records import Row, obj, text
from bench.model.results import Run
from bench.report.frame import Frames

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MIB = 2**20
KIB = 2**10
LEVEL = 0.95
RESAMPLES = 2000
# bench's domain XML names no machine: libvirt then takes its default for x86_64.
LIBVIRT_DEFAULT_MACHINE = "pc"
QEMU_DEFAULT_MACHINE = "microvm"
TSC_KEY = "tsc_early_khz="

# (measure as shown, frame, column, divide by N, scale): sample measures are one value
# per ready instance, step measures one value per step.
MEASURES: tuple[tuple[str, str, str, bool, float], ...] = (
    ("create_s", "samples", "create_s", False, 1.0),
    ("start_s", "samples", "start_s", False, 1.0),
    ("ready_s", "samples", "ready_s", False, 1.0),
    ("guest_uptime_s", "samples", "guest_uptime_s", False, 1.0),
    ("mem_host_per_instance_mib", "steps", "host_drop_per_instance_bytes", False, MIB),
    ("mem_pss_per_instance_mib", "samples", "pss_bytes", False, MIB),
    ("disk_per_instance_mib", "samples", "disk_writable_bytes", False, MIB),
    ("storage_per_instance_kib", "steps", "disk_growth_bytes", True, KIB),
    ("teardown_per_instance_s", "steps", "teardown_s", True, 1.0),
    # Last, so that the bootstrap's random stream for the measures above is unchanged.
    ("vmm_overhead_per_instance_mib", "samples", "vmm_overhead_bytes", False, MIB),
    ("slab_per_instance_kib", "steps", "slab_growth_bytes", True, KIB),
)
COLUMNS = [
    "run",
    "n",
    "measure",
    "qemu",
    "qemu_low",
    "qemu_high",
    "qemu_steps",
    "libvirt",
    "libvirt_low",
    "libvirt_high",
    "libvirt_steps",
    "tax",
    "tax_low",
    "tax_high",
    "tax_pct",
]


@dataclass(frozen=True)
class Pair:
    run: str
    qemu: str  # platform names
    libvirt: str
    machine: str
    accel: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaxSection:
    """One pair's part of the report: its heading, one display table per N (strings),
    and the notes under them; Markdown and HTML lay out the same sections."""

    heading: str
    tables: list[pd.DataFrame]
    notes: list[str]


@dataclass
class Tax:
    table: pd.DataFrame  # COLUMNS: one row per (run, N, measure)
    sections: list[TaxSection]
    pairs: list[Pair]
    notes: list[str] = field(default_factory=list)


def libvirt_tax(
    frames: Frames, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Tax | None:
    """The tax table of every tax pair in the frames' runs; None when there is none."""
    import pandas as pd

    pairs = [
        replace(p, notes=p.notes + tuple(_failure_notes(frames, p)))
        for r in frames.runs
        for p in tax_pairs(r, frames)
    ]
    if not pairs:
        return None
    rows = []
    for pair in pairs:
        rows += _pair_rows(frames, pair, level, resamples, seed)
    table = pd.DataFrame(rows, columns=COLUMNS)
    notes = [n for p in pairs for n in p.notes]
    return Tax(table, tax_sections(table, pairs, level), pairs, notes)


# -- which platforms boot the same guest --------------------------------------------


def tax_pairs(run: Run, frames: Frames | None = None) -> list[Pair]:
    """(qemu, libvirt) platforms of one run that boot the same guest."""
    listed = obj(run.metadata.get("scenario")).get("platforms")
    platforms = [obj(p) for p in listed] if isinstance(listed, list) else []
    engines = obj(run.metadata.get("engines"))
    ran = set(run.frame["platform"].unique())
    guests = {}
    for p in platforms:
        name = text(p.get("name"))
        if p.get("backend") in ("qemu", "libvirt") and name is not None and name in ran:
            guests[name] = _guest(p, obj(engines.get(name)), run)
    out = []
    for q, gq in guests.items():
        if gq.backend != "qemu":
            continue
        for lv, gl in guests.items():
            if gl.backend != "libvirt":
                continue
            if gq.same_guest(gl):
                notes = []
                if gq.tsc_early_khz:
                    notes.append(
                        f"{run.run_id}: the direct QEMU guest ({q}) also had "
                        f"{gq.tsc_early_khz} on its kernel command line (the qemu "
                        "backend's fix for microvm under TCG); the libvirt guest did not."
                    )
                out.append(Pair(run.run_id, q, lv, gq.machine, gq.accel, tuple(notes)))
    return out


@dataclass(frozen=True)
class _Guest:
    """What one qemu or libvirt platform boots, from its scenario entry and its engine
    facts (values as the scenario wrote them: compared, never read)."""

    backend: JsonValue
    machine: str
    accel: str | None
    memory: JsonValue
    vcpus: JsonValue
    boot: tuple[JsonValue, ...]
    cmdline: JsonValue
    tsc_early_khz: str | None

    def same_guest(self, other: _Guest) -> bool:
        """Same machine, accel, memory, vCPUs, boot source and command line."""
        return self._booted() == other._booted()

    def _booted(self) -> tuple[object, ...]:
        return (self.machine, self.accel, self.memory, self.vcpus, self.boot, self.cmdline)


def _guest(platform: Row, engine: Row, run: Run) -> _Guest:
    backend = platform.get("backend")
    if backend == "qemu":
        given = engine.get("machine") or platform.get("machine")
        machine = str(given) if given else QEMU_DEFAULT_MACHINE
    else:
        given = platform.get("machine") or engine.get("machine")
        machine = str(given) if given else LIBVIRT_DEFAULT_MACHINE
    df = run.frame
    mine = df.loc[df["platform"] == platform["name"], "accel"].drop_duplicates()
    accels = {a for a in mine if isinstance(a, str)}
    accel = text(engine.get("accel")) or (accels.pop() if len(accels) == 1 else None)
    # What the guest boots: its files, or the bench image (and its rootfs when known).
    boot = (
        platform.get("disk"),
        platform.get("kernel"),
        platform.get("initrd"),
        None if platform.get("disk") or platform.get("kernel") else platform.get("image"),
        engine.get("rootfs_sha256"),
    )
    # The command line the user gave (None: the image's own); the qemu backend's own
    # addition is kept apart.
    used = str(engine.get("cmdline") or "").split()
    tsc = next((w for w in used if w.startswith(TSC_KEY)), None)
    return _Guest(
        backend=backend,
        machine=machine,
        accel=accel,
        memory=platform.get("memory"),
        vcpus=platform.get("vcpus", 1),
        boot=boot,
        cmdline=platform.get("cmdline"),
        tsc_early_khz=tsc,
    )


def _failure_notes(frames: Frames, pair: Pair) -> list[str]:
    """Instances left out of the medians because they never became ready."""
    s = frames.samples
    s = s[(s["run"] == pair.run) & s["platform"].isin([pair.qemu, pair.libvirt])]
    out = []
    for (n, name), g in s.groupby(["n", "platform"], sort=True):
        failed = int((g["ok"] != True).sum())  # noqa: E712 (a pandas mask)
        if failed:
            why = ", ".join(sorted({str(f) for f in g.loc[g["ok"] != True, "failure"].dropna()}))  # noqa: E712
            out.append(
                f"N={n}: {failed} of {len(g)} `{name}` instances never became ready "
                f"({why or 'no reason recorded'}); left out of the medians."
            )
    return out


# -- the figures ----------------------------------------------------------------------


def _pair_rows(
    frames: Frames, pair: Pair, level: float, resamples: int, seed: int
) -> list[dict[str, object]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    s, st = frames.samples, frames.steps
    ran = st[(st["run"] == pair.run) & (st["status"] == "ran")]
    ready = s[(s["run"] == pair.run) & (s["ok"] == True)]  # noqa: E712 (a pandas mask)
    rows = []
    ns = sorted(set(ran.loc[ran["platform"].isin([pair.qemu, pair.libvirt]), "n"].astype(int)))
    for n in ns:
        for measure, frame, column, per_n, scale in MEASURES:
            src = ready if frame == "samples" else ran
            groups = {
                name: _by_step(src[(src["platform"] == name) & (src["n"] == n)], column, per_n, n)
                for name in (pair.qemu, pair.libvirt)
            }
            q = [g / scale for g in groups[pair.qemu]]
            lv = [g / scale for g in groups[pair.libvirt]]
            if not q and not lv:
                continue
            mq, mlv = _median(q), _median(lv)
            bq, blv = _boot(q, rng, resamples), _boot(lv, rng, resamples)
            tax = mlv - mq
            d_low, d_high = _interval(
                blv - bq if bq is not None and blv is not None else None, level
            )
            rows.append(
                {
                    "run": pair.run,
                    "n": n,
                    "measure": measure,
                    "qemu": mq,
                    **dict(zip(("qemu_low", "qemu_high"), _interval(bq, level), strict=True)),
                    "qemu_steps": len(q),
                    "libvirt": mlv,
                    **dict(
                        zip(("libvirt_low", "libvirt_high"), _interval(blv, level), strict=True)
                    ),
                    "libvirt_steps": len(lv),
                    "tax": tax,
                    "tax_low": d_low,
                    "tax_high": d_high,
                    "tax_pct": 100 * tax / mq if mq and math.isfinite(mq) else math.nan,
                }
            )
    return rows


def _by_step(df: pd.DataFrame, column: str, per_n: bool, n: int) -> list[np.ndarray]:
    """The column's values grouped by step (one array per step), NaNs left out."""
    import numpy as np

    out = []
    for _, g in df.groupby("step", sort=True, dropna=False):
        v = g[column].to_numpy(dtype=float)
        v = v[~np.isnan(v)]
        if v.size:
            out.append(v / n if per_n else v)
    return out


def _median(groups: list[np.ndarray]) -> float:
    import numpy as np

    return float(np.median(np.concatenate(groups))) if groups else math.nan


def _boot(groups: list[np.ndarray], rng: np.random.Generator, resamples: int) -> np.ndarray | None:
    """Medians of `resamples` bootstrap resamples of the steps; None under two steps."""
    import numpy as np

    if len(groups) < 2:
        return None
    k = len(groups)
    picks = rng.integers(0, k, (resamples, k))
    if len({len(g) for g in groups}) == 1:  # steps of one N usually have N values each
        return np.median(np.stack(groups)[picks].reshape(resamples, -1), axis=1)
    return np.array([np.median(np.concatenate([groups[i] for i in row])) for row in picks])


def _interval(values: np.ndarray | None, level: float) -> tuple[float, float]:
    import numpy as np

    if values is None:
        return math.nan, math.nan
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


# -- the sections the report shows ---------------------------------------------------


def tax_sections(table: pd.DataFrame, pairs: list[Pair], level: float = LEVEL) -> list[TaxSection]:
    """Per pair: its heading, one display DataFrame per N, and the notes under them (the
    Markdown file and the HTML page render the same sections)."""
    import pandas as pd

    out = []
    for pair in pairs:
        rows = table[table["run"] == pair.run]
        accel = pair.accel or "accel unknown"
        heading = (
            f"The libvirt tax: {pair.libvirt} (libvirt) vs {pair.qemu} (direct QEMU), "
            f"machine {pair.machine}, {accel} · {pair.run}"
        )
        frames = []
        for n, g in rows.groupby("n", sort=True):
            body = [
                [
                    r["measure"],
                    _cell(r["qemu"], r["qemu_low"], r["qemu_high"], r["measure"], r["qemu_steps"]),
                    _cell(
                        r["libvirt"],
                        r["libvirt_low"],
                        r["libvirt_high"],
                        r["measure"],
                        r["libvirt_steps"],
                    ),
                    _cell(r["tax"], r["tax_low"], r["tax_high"], r["measure"], None, signed=True),
                    "-" if not math.isfinite(r["tax_pct"]) else f"{r['tax_pct']:+.0f}%",
                ]
                for r in g.to_dict("records")
            ]
            headers = ["N=" + str(n), "direct QEMU", "libvirt", "tax (libvirt - QEMU)", "tax %"]
            frames.append(pd.DataFrame(body, columns=headers))
        notes = [
            f"Medians; [{level:.0%} interval, bootstrap over steps]; (steps). Times from "
            "each instance's launch call; memory and storage per instance.",
            *pair.notes,
        ]
        out.append(TaxSection(heading, frames, notes))
    return out


def _cell(
    v: float, low: float, high: float, measure: str, steps: int | None, signed: bool = False
) -> str:
    if not math.isfinite(v):
        return "-"
    unit = measure.rsplit("_", 1)[-1]
    digits = 0 if unit == "kib" else (1 if unit == "mib" else (2 if abs(v) < 10 else 1))
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = f"{fmt.format(v)} {unit.replace('mib', 'MiB').replace('kib', 'KiB')}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    if steps is not None:
        text += f" ({steps})"
    return text

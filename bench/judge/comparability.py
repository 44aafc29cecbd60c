"""Which facts of two or more runs must match for their numbers to be compared like for
like, and which are only shown. One policy, read by `bench compare` (its warnings) and by
the multi-run report (its differences table), so both name the same differences.

    mismatches([metadata, ...], platforms=None, accels=None) -> [Mismatch, ...]
    run_mismatches(baseline_metadata, current_metadata, platforms, accels) -> [Mismatch, ...]
    warnings(mismatches) -> one line per kind (and platform): what differs, what to do

Pure functions over run metadata dicts as stored in metadata.json; no files, no engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from pydantic import JsonValue

from bench.model.records import Row, obj, objs, text

# metadata.json as read: nested JSON looked up by key (its `host`, `scenario`, `engines`),
# each part narrowed where it is read (bench.model.records.obj, text).
Metadata: TypeAlias = Mapping[str, JsonValue]

WARNING = "warning"  # the numbers may move for this reason alone: compare warns
INFO = "info"  # shown next to the numbers; not a reason to distrust them

# Host facts, in the order the report lists them.
HOST_FACTS: dict[str, str] = {
    "hostname": WARNING,
    "cpu_model": WARNING,
    "cpu_cores": WARNING,
    "cpu_physical_cores": INFO,
    "mem_total_bytes": INFO,
    "kernel": WARNING,
    "os": INFO,
    "arch": INFO,
    "kvm_device": INFO,
    "cgroup_version": INFO,
    "bench_version": INFO,
}
# Facts an engine reports about itself (metadata "engines", per platform). Every key
# ending in ENGINE_VERSION_SUFFIX is a WARNING too, whichever engine wrote it. The image
# is shown only: a rebuilt image is usually what is being tested.
ENGINE_FACTS: dict[str, str] = {
    "engine": WARNING,
    "accel": WARNING,
    "runtime": WARNING,
    "storage_driver": WARNING,
    "boot": WARNING,
    "image": INFO,
    "image_id": INFO,
    "rootfs_sha256": INFO,
    "guest_kernel": INFO,
}
ENGINE_VERSION_SUFFIX = "_version"
# Scenario keys that do not change what is measured; every other key must match (WARNING).
# Platforms are compared one by one, setting by setting.
SCENARIO_FREE_KEYS = frozenset({"name", "description", "platforms"})

# What compare says for each kind of WARNING mismatch; {what} lists the differences.
_ADVICE = {
    "host": "the runs come from different hosts ({what}): a change may come from the host, "
    "not from what you changed; compare runs from one host",
    "scenario": "the scenarios differ ({what}): timings depend on these; compare runs of "
    "one scenario file",
    "engine_version": "platform {platform!r}: engine versions differ ({what}): expected if "
    "the upgrade is what you test, otherwise pin the versions",
    "accel": "platform {platform!r}: accel differs ({what}): TCG and KVM boot times are not "
    "comparable; run both on hosts with the same accel",
    "engine": "platform {platform!r}: the engine setup differs ({what}): the engine is part of "
    "what is measured; compare runs with the same engine setup",
    "platform": "platform {platform!r}: scenario settings differ ({what}): timings depend on "
    "these; compare runs of one scenario file",
}


class _Absent:
    """The value of a platform's fact in a run that does not have the platform."""

    def __repr__(self) -> str:
        return "-"


ABSENT = _Absent()


@dataclass(frozen=True)
class Mismatch:
    """One fact whose value is not the same in every run: one value per run, in run order."""

    kind: str  # host, scenario, engine_version, engine, accel, platform
    key: str
    values: tuple[object, ...]  # JSON values from metadata, or ABSENT
    severity: str  # WARNING or INFO
    platform: str | None = None

    @property
    def label(self) -> str:
        """Where the fact lives: host.kernel, scenario.repeat, vm.qemu_version,
        scenario.platforms.vm.memory."""
        if self.kind == "host" or self.kind == "scenario":
            return f"{self.kind}.{self.key}"
        if self.kind == "platform":
            return f"scenario.platforms.{self.platform}.{self.key}"
        return f"{self.platform}.{self.key}"

    @property
    def message(self) -> str:
        """This difference alone, as a sentence (with advice when it is a WARNING)."""
        if self.severity == WARNING:
            return warnings([self])[0]
        return f"{self.label} differs ({' → '.join(str(v) for v in self.values)})"


def host_facts(metadata: Metadata) -> Row:
    """The facts of the host a run measured on: the one place that knows where they are.
    Their JSON values as stored: the report formats each by its key."""
    return dict(obj(metadata.get("host")))


def differences(
    records: Sequence[Mapping[str, object]], keys: Iterable[str]
) -> dict[str, list[object]]:
    """The keys whose values are not the same in every record, with each record's value."""
    out = {}
    for k in keys:
        values = [r.get(k) for r in records]
        if any(v != values[0] for v in values[1:]):
            out[k] = values
    return out


def mismatches(
    metadatas: Sequence[Metadata],
    platforms: Sequence[str] | None = None,
    accels: Sequence[Mapping[str, Iterable[str]]] | None = None,
) -> list[Mismatch]:
    """Every fact that differs between the runs, WARNINGs and INFOs, in a stable order:
    host, scenario, then per platform its engine versions, accel, engine setup, settings.

    `platforms`: the ones to look at (default: every platform any run has). A platform is
    compared among the runs that have it; the others show ABSENT. `accels`: per run, the
    accels seen in its samples per platform (they add to the engine's `accel`)."""
    runs = list(metadatas)
    seen = list(accels) if accels is not None else [{} for _ in runs]
    out = _compare("host", None, [host_facts(m) for m in runs], HOST_FACTS)
    scenarios = [obj(m.get("scenario")) for m in runs]
    keys = [k for k in scenarios[0] if k not in SCENARIO_FREE_KEYS]
    out += _compare("scenario", None, scenarios, dict.fromkeys(keys, WARNING))
    if platforms is None:
        platforms = list(
            dict.fromkeys(p for i, m in enumerate(runs) for p in _platforms(m, seen[i]))
        )
    for p in platforms:
        have = [i for i, m in enumerate(runs) if p in _platforms(m, seen[i])]
        if len(have) < 2:
            continue
        engines = [obj(obj(runs[i].get("engines")).get(p)) for i in have]
        versions = sorted(k for e in engines for k in e if k.endswith(ENGINE_VERSION_SUFFIX))
        # A version only one run has is a change of engine (docker_version → podman_version).
        found = _compare("engine_version", p, engines, dict.fromkeys(versions, WARNING), False)
        run_accels = [_accel(e, seen[i].get(p, ())) for i, e in zip(have, engines, strict=True)]
        found += _compare("accel", p, [{"accel": a} for a in run_accels], {"accel": WARNING})
        setup = {k: s for k, s in ENGINE_FACTS.items() if k != "accel"}
        found += _compare("engine", p, engines, setup)
        settings = [s for i in have if (s := _platform_settings(runs[i], p)) is not None]
        if len(settings) == len(have):
            keys = [k for k in settings[0] if k != "name"]
            found += _compare("platform", p, settings, dict.fromkeys(keys, WARNING))
        out += [_spread(m, have, len(runs)) for m in found]
    return out


def run_mismatches(
    baseline: Metadata,
    current: Metadata,
    platforms: Sequence[str],
    accels: tuple[Mapping[str, Iterable[str]], Mapping[str, Iterable[str]]] | None = None,
) -> list[Mismatch]:
    """What differs between two runs' metadata on the platforms they share."""
    return mismatches([baseline, current], platforms, accels)


def warnings(found: Iterable[Mismatch]) -> list[str]:
    """The WARNING mismatches as compare prints them: one line per kind and platform."""
    grouped: dict[tuple[str, str | None], list[Mismatch]] = {}
    for m in found:
        if m.severity == WARNING:
            grouped.setdefault((m.kind, m.platform), []).append(m)
    return [
        _ADVICE[kind].format(platform=platform, what=_describe(ms))
        for (kind, platform), ms in grouped.items()
    ]


def _compare(
    kind: str,
    platform: str | None,
    records: Sequence[Mapping[str, object]],
    policy: Mapping[str, str],
    shared_only: bool = True,
) -> list[Mismatch]:
    """Mismatches of `policy`'s keys. `shared_only`: a key only some records have comes
    from a newer bench (a fact it learned to record, a default it fills in), not from a
    change of setup, so it is skipped."""
    keys = [k for k in policy if not shared_only or all(k in r for r in records)]
    diff = differences(records, keys)
    return [Mismatch(kind, k, tuple(vs), policy[k], platform) for k, vs in diff.items()]


def _spread(m: Mismatch, have: list[int], n_runs: int) -> Mismatch:
    """`m`'s values over the runs that have its platform, placed among all runs."""
    values: list[object] = [ABSENT] * n_runs
    for i, v in zip(have, m.values, strict=True):
        values[i] = v
    return Mismatch(m.kind, m.key, tuple(values), m.severity, m.platform)


def _platforms(metadata: Metadata, seen: Mapping[str, object]) -> list[str]:
    named = [n for p in _listed(metadata) if (n := text(p.get("name"))) is not None]
    return list(dict.fromkeys([*named, *obj(metadata.get("engines")), *seen]))


def _listed(metadata: Metadata) -> list[Row]:
    """The scenario's platform entries."""
    return objs(obj(metadata.get("scenario")).get("platforms"))


def _platform_settings(metadata: Metadata, name: str) -> Mapping[str, object] | None:
    for p in _listed(metadata):
        if p.get("name") == name:
            return p
    return None


def _accel(engine: Metadata, seen: Iterable[str | None]) -> str:
    """'kvm', 'tcg', 'kvm/tcg' (a run that fell back part way), or '-' (none reported)."""
    found = {text(engine.get("accel")), *seen}
    return "/".join(sorted(a for a in found if a)) or "-"


def _describe(found: Sequence[Mismatch]) -> str:
    if len(found) == 1 and found[0].kind == "accel":
        return " → ".join(str(v) for v in found[0].values)
    return "; ".join(f"{m.key} {' → '.join(str(v) for v in m.values)}" for m in found)

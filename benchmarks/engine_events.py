"""Where a container's create and start calls go, from the engine's own events
(bench.measurements.engine_events): one step of N=3 per engine and runtime through the
runner with the real backends, medians of each phase, written to benchmarks/results.md.

    python benchmarks/engine_events.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.model.phases import phases  # noqa: E402
from benchmarks.results_md import host_line, write_section  # noqa: E402
from tests.integration.bench_runs import run_real  # noqa: E402

PLATFORMS = {
    "docker runc": "{name: c, backend: docker, image: busybox, memory: 64MiB}",
    "docker runsc": "{name: c, backend: docker, image: busybox, memory: 64MiB, runtime: runsc}",
    "podman runc": "{name: c, backend: podman, image: busybox, memory: 64MiB}",
}
SCENARIO = "name: ev\ntimeout: 60s\ncounts: [3]\nsettle: 0s\nwarmup: 0\nplatforms:\n  - %s\n"


def main() -> None:
    rows = []
    for what, platform in PLATFORMS.items():
        sink, _, left = run_real(SCENARIO % platform)
        assert left == [], left
        ok = [s for s in sink.samples if s["ok"]]
        per: dict[str, list[float]] = {}
        for s in ok:
            for p in phases(s)[0]:
                per.setdefault(p.name, []).append(p.seconds * 1e3)

        def med(k: str, ok: list[dict] = ok) -> float | None:
            v = [s[k] for s in ok if s[k] is not None]
            return statistics.median(v) if v else None

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x * 1e3:.1f}"

        parts = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in per.items())
        rows.append(
            f"| {what} | {len(ok)}/{len(sink.samples)} | {fmt(med('engine_create_s'))} | "
            f"{fmt(med('create_s'))} | {fmt(med('engine_start_s'))} | {fmt(med('start_s'))} | "
            f"{fmt(med('ready_s'))} | {parts} |"
        )
        print(rows[-1])
    text = (
        f"{host_line()}\n\nOne step of N=3 per engine and runtime"
        " (`python benchmarks/engine_events.py`);"
        " medians in ms from the launch call. The engine's events are its wall clock less"
        " the launch call's wall instant.\n\n"
        "| engine | ok | create event | create call returned | start event | start call returned"
        " | ready | phases (ms, medians) |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    write_section(
        Path(__file__).parent / "results.md",
        f"{time.strftime('%Y-%m-%d')}: where a container's start call goes (engine events)",
        text,
    )


if __name__ == "__main__":
    main()

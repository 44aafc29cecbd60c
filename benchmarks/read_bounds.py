"""What reading a results folder costs, sound or hostile (issue 20 section 4). A
benchmark that prints figures, not a test.

    .venv/bin/python benchmarks/read_bounds.py [--samples 1000000] [--out benchmarks/results.md]

Every folder is made under a temporary directory this script removes:
- a sound run of `--samples` samples (default 1 M: 2 platforms x N 500-5000 x 40
  repeats), written by bench's own RunWriter from bench.model.records.Sample, so its lines are
  the runner's own (every declared field, memory and disk figures of a container);
- hostile folders: samples.jsonl as a link to /dev/zero (refused before a byte is read:
  the link itself is never opened), as a link to a root-only dummy file, as a FIFO,
  as one 2 GiB line (a sparse file), and metadata.json as a sparse 17 GiB file.
`bench report` runs on each in its own process; wall time and peak RSS come from
os.wait4 of that process. Targets: the sound run reported in <= 60 s and <= 1.5 GB peak
RSS; each hostile folder refused (exit non-zero, one error line) in <= 2 s and <= 300 MB.

Exit 1 when a target is missed (the table marks it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_md  # benchmarks/results_md.py (this script's folder is on sys.path)

from bench.model.records import Sample, StepRecord
from bench.model.results import SAMPLES, RunWriter

REPO = Path(__file__).resolve().parent.parent
SECTION = "# Reading results folders: size and hostile input (issue 20)"
SOUND = {"wall_s": 60.0, "rss_mb": 1500.0}
HOSTILE = {"wall_s": 2.0, "rss_mb": 300.0}
COUNTS = (500, 1000, 2000, 4000, 5000)
PLATFORMS = {"container": ("docker", "container"), "vm": ("libvirt", "vm")}
BATCH = 10_000  # samples per add_samples call (one fsync each)


def write_sound_run(root: Path, samples: int) -> Path:
    """A complete run of about `samples` samples in bench's own format."""
    run_id = "bounds-20261205-000000-0123456789abcdef"
    writer = RunWriter(root / run_id, run_id)
    per_repeat = len(PLATFORMS) * sum(COUNTS)
    repeats = max(1, round(samples / per_repeat))
    scenario = {
        "name": "bounds",
        "platforms": [
            {"name": p, "backend": b, "counts": list(COUNTS), "repeats": repeats}
            for p, (b, _) in PLATFORMS.items()
        ],
    }
    writer.start(
        {
            "scenario": scenario,
            "hosts": {"lab1": {"hostname": "lab1", "cpu_cores": 2, "kernel": "6.1.0"}},
            "engines": {p: {"engine": b, "host": "lab1"} for p, (b, _) in PLATFORMS.items()},
        }
    )
    step = 0
    batch: list[Sample] = []
    for repeat in range(repeats):
        for platform, (backend, kind) in PLATFORMS.items():
            vm = kind == "vm"
            for n in COUNTS:
                # What a step's samples and its step record share.
                common = dict(run_id=run_id, step=step, platform=platform, backend=backend,
                              kind=kind, host="lab1", n=n, repeat=repeat)  # fmt: skip
                for i in range(n):
                    ready = (4.0 if vm else 0.15) + (i % 97) / 1000 + repeat / 10_000
                    batch.append(
                        Sample(
                            **common,
                            index=i,
                            name=f"bench-{run_id}-{platform}-s{step}-{i}",
                            ok=i % 1000 != 999,
                            failure=None if i % 1000 != 999 else "timeout",
                            queued_s=i / 1000,
                            create_s=0.02 + i / 10_000,
                            start_s=0.1 + i / 10_000,
                            ready_s=ready if i % 1000 != 999 else None,
                            ready_at_s=ready + i / 1000,
                            guest_uptime_s=177.9 + i,
                            guest_kernel="6.1.0-guest" if vm else "6.1.0",
                            marker_fields={"uptime": f"{177.9 + i:.2f}", "kernel": "6.1.0"},
                            accel="kvm" if vm else None,
                            pss_bytes=14_530_560 + i,
                            uss_bytes=13_049_856 + i,
                            rss_bytes=16_904_192 + i,
                            processes=3,
                            engine_mem_bytes=724_992 + i,
                            engine_mem_source="cgroup usage - inactive_file",
                            disk_writable_bytes=4096 * (i % 3),
                        )
                    )
                    if len(batch) == BATCH:
                        writer.add_samples(batch)
                        batch = []
                writer.add_step(
                    StepRecord(
                        **common,
                        failures=n // 1000,
                        all_ready_s=n / 50,
                        launch_rate_per_s=50.0,
                        wait_s=n / 50,
                        teardown_s=n / 100,
                        host_drop_per_instance_bytes=20e6,
                        disk_growth_bytes=n * 12288,
                    )
                )
                step += 1
    if batch:
        writer.add_samples(batch)
    writer.finish("complete")
    return writer.dir


def hostile_runs(root: Path, sound: Path) -> dict[str, Path]:
    """Folders like `sound` (its metadata and steps) with one hostile file each."""
    root.mkdir()
    dummy = root / "root-only"
    dummy.write_bytes((sound / SAMPLES).open("rb").read(4096).rsplit(b"\n", 1)[0] + b"\n")
    dummy.chmod(0o000)

    def folder(name: str) -> Path:
        d = root / name
        d.mkdir()
        for f in ("metadata.json", "steps.jsonl"):
            shutil.copyfile(sound / f, d / f)
        return d

    runs = {}
    d = runs["samples.jsonl -> /dev/zero"] = folder("devzero")
    # Never opened: the read refuses the link itself (O_NOFOLLOW), and nothing here
    # writes through it.
    (d / SAMPLES).symlink_to("/dev/zero")
    d = runs["samples.jsonl -> root-only file"] = folder("rootonly")
    (d / SAMPLES).symlink_to(dummy)
    d = runs["samples.jsonl a FIFO"] = folder("fifo")
    os.mkfifo(d / SAMPLES)
    d = runs["samples.jsonl one 2 GiB line"] = folder("longline")
    with (d / SAMPLES).open("wb") as f:
        f.truncate(2 * 2**30)  # sparse: no disk, no newline
    d = runs["metadata.json 17 GiB"] = folder("bigmeta")
    with (d / "metadata.json").open("r+b") as f:
        f.truncate(17 * 2**30)
    return runs


def report(run: Path, out: Path) -> tuple[float, float, int, str]:
    """`bench report run --out out` in its own process: wall s, peak RSS MB, exit, stderr."""
    err = out.parent / (out.name + ".err")
    cmd = [sys.executable, "-m", "bench", "report", str(run), "--out", str(out)]
    start = time.monotonic()
    with err.open("wb") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode, err.read_text().strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, help="write the table into this results file")
    args = ap.parse_args()

    rows, missed = [], False
    tmp = Path(tempfile.mkdtemp(prefix="bench-read-bounds-"))
    try:
        t0 = time.monotonic()
        sound = write_sound_run(tmp / "results", args.samples)
        size_mb = (sound / SAMPLES).stat().st_size / 1e6
        lines = sum(1 for _ in (sound / SAMPLES).open("rb"))
        print(f"wrote {lines} samples ({size_mb:.0f} MB) in {time.monotonic() - t0:.0f} s")
        cases = [(f"sound run, {lines} samples ({size_mb:.0f} MB)", sound, True)]
        cases += [(name, d, False) for name, d in hostile_runs(tmp / "hostile", sound).items()]
        for i, (name, run, sound_case) in enumerate(cases):
            wall, rss, code, err = report(run, tmp / f"out{i}")
            target = SOUND if sound_case else HOSTILE
            ok = (code == 0) == sound_case and wall <= target["wall_s"] and rss <= target["rss_mb"]
            missed |= not ok
            said = "report written" if code == 0 else (err.splitlines() or ["(nothing)"])[-1]
            rows.append(
                f"| {name} | {wall:.1f} s | {rss:.0f} MB | {code} | "
                f"{target['wall_s']:.0f} s, {target['rss_mb']:.0f} MB | "
                f"{'met' if ok else 'MISSED'} | {said.replace(str(tmp), '$TMP')[:110]} |"
            )
            print(rows[-1], flush=True)
    finally:
        for p in tmp.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(tmp)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = "\n".join(
        [
            SECTION,
            "",
            f"Measured {when} by `benchmarks/read_bounds.py` on {results_md.host_line()}: "
            "`bench report` on each folder in its own process (wall time and peak RSS "
            "from os.wait4).",
            "",
            "| folder | wall | peak RSS | exit | target | | what bench said |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    print()
    print(text)
    if args.out:
        results_md.write_section(args.out, SECTION, text)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

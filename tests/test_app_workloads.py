"""The workloads issue 23 §1 names beyond the first set: fio's sequential bandwidth,
random memory access (stress-ng's vm stressor in prime strides) and one application
(busybox httpd with wrk over the instance's loopback). Parsers on the real tools'
output captured on this host, the argv and the shell around them, refused options, the
workloads image's wrk script, and a fake run through the report's table."""

from __future__ import annotations

import hashlib
import json

import pytest

from bench.machines import images, rootfs
from bench.measurements import workloads as wl
from bench.model.errors import ScenarioError
from bench.plan.scenario import parse_scenario
from bench.report import workloads as report_wl
from tests.helpers import run_fake

# fio 3.33 --name=seqwrite --rw=write --bs=1m --size=64m --direct=1 --ioengine=psync
# --runtime=2 --time_based --output-format=json on this host, cut to the keys bench reads.
FIO_SEQWRITE = {
    "fio version": "fio-3.33",
    "jobs": [
        {
            "jobname": "seqwrite",
            "job options": {
                "name": "seqwrite",
                "rw": "write",
                "bs": "1m",
                "size": "64m",
                "direct": "1",
                "ioengine": "psync",
                "runtime": "2",
            },
            "read": {"io_bytes": 0, "iops": 0.0, "bw_bytes": 0},
            "write": {
                "io_bytes": 3333423104,
                "iops": 1588.705647,
                "bw_bytes": 1665878612,
                "clat_ns": {"percentile": {"99.000000": 839680}},
            },
        }
    ],
}

# stress-ng 0.15.06 --vm 1 --vm-bytes 256M --vm-method prime-0 --vm-keep --metrics
# -t 3s --yaml on this host (its system-info cut).
RANDMEM_YAML = b"""---
system-info:
      stress-ng-version: 0.15.06
      pagesize: 4096
      cpus: 2

metrics:
    - stressor: vm
      bogo-ops: 49366
      bogo-ops-per-second-usr-sys-time: 17452.493165
      bogo-ops-per-second-real-time: 16159.540905
      wall-clock-time: 3.054914
      user-time: 2.636029
      system-time: 0.192564
      cpu-usage-per-instance: 92.591590
      max-rss: 264028

...
"""

# What the workloads image's wrk script (rootfs.WRK_REPORT_LUA) wrote for wrk 4.1.0
# -t1 -c4 -d1s against busybox 1.35's httpd on this host's loopback.
WRK_JSON = (
    b'{"duration_us": 1004951, "requests": 2062, "bytes": 8885158, "errors": {"connect": 0, '
    b'"read": 0, "write": 0, "status": 0, "timeout": 0}, "latency_us": {"p50": 1225, '
    b'"p99": 5243, "mean": 1886.5539696699375, "max": 8306}}\n'
)


def test_a_sequential_fio_job_gives_its_bandwidth_first_and_its_iops_as_a_diagnostic():
    figures, diagnostics = wl.Fio().parse(json.dumps(FIO_SEQWRITE).encode())
    assert [f.figure for f in figures] == ["write_bytes_per_s", "write_clat_p99_s"]
    bw = figures[0]
    assert (bw.value, bw.unit, bw.worse) == (1665878612, "bytes/s", "lower")
    assert diagnostics["write_iops"] == pytest.approx(1588.705647)
    assert diagnostics["rw"] == "write" and diagnostics["bs"] == "1m"
    # The same job at random offsets keeps IOPS as its first figure.
    random = json.loads(json.dumps(FIO_SEQWRITE))
    random["jobs"][0]["job options"]["rw"] = "randwrite"
    figures, _ = wl.Fio().parse(json.dumps(random).encode())
    assert [f.figure for f in figures][:2] == ["write_iops", "write_bytes_per_s"]


@pytest.mark.parametrize(
    ("options", "sequential"),
    [
        ({}, True),  # fio's default rw is read
        ({"rw": "read"}, True),
        ({"rw": "rw"}, True),
        ({"readwrite": "randrw"}, False),
        ({"rw": "randread"}, False),
        ({"rw": "read", "percentage_random": "50"}, False),
    ],
)
def test_which_fio_jobs_are_sequential(options, sequential):
    assert wl.Fio.sequential(options) is sequential


def test_the_sequential_built_ins_pin_1_mib_direct_psync_where_the_random_ones_write():
    for name, tool, rw in (
        ("seqread", "fio", "read"),
        ("seqwrite", "fio", "write"),
        ("seqread-volume", "fio-volume", "read"),
        ("seqwrite-volume", "fio-volume", "write"),
    ):
        b = wl.BUILTIN[name]
        assert b.tool == tool
        assert set(b.args) == {
            f"--rw={rw}",
            "--bs=1m",
            "--size=64m",
            "--direct=1",
            "--ioengine=psync",
        }
    argv = wl.TOOLS["fio-volume"].argv("seqread-volume", list(wl.BUILTIN["seqread"].args), 3)
    assert f"--filename={wl.VOLUME_FIO_FILE}" in argv
    with pytest.raises(ScenarioError, match="set volume: true on platform r"):
        parse_scenario(
            "name: t\nworkloads: {run: [seqwrite-volume]}\n"
            "platforms:\n  - {name: r, backend: docker, image: w}\n"
        )


def test_randmem_is_a_stress_ng_rate_named_by_its_stressor():
    b = wl.BUILTIN["randmem"]
    assert b.tool == "stress-ng"
    # Prime strides over a buffer larger than the caches, mapped once (--vm-keep: the
    # rate is of touching memory, not of mapping it again).
    assert b.args == ("--vm", "1", "--vm-bytes", "256M", "--vm-method", "prime-0", "--vm-keep")
    figures, diagnostics = wl.StressNg().parse(RANDMEM_YAML)
    assert [(f.figure, f.unit, f.worse) for f in figures] == [
        ("vm.bogo_ops_per_s", "ops/s", "lower")
    ]
    assert figures[0].value == pytest.approx(16159.540905)
    assert diagnostics["vm.cpu_usage_pct"] == pytest.approx(92.59159)


def test_wrk_result_gives_requests_per_second_and_latency_percentiles_in_seconds():
    figures, diagnostics = wl.Wrk().parse(WRK_JSON)
    by = {f.figure: f for f in figures}
    assert list(by) == ["requests_per_s", "latency_p50_s", "latency_p99_s"]
    assert by["requests_per_s"].value == pytest.approx(2062 / 1.004951)
    assert (by["requests_per_s"].unit, by["requests_per_s"].worse) == ("requests/s", "lower")
    assert by["latency_p50_s"].value == pytest.approx(1225e-6)
    assert (by["latency_p99_s"].value, by["latency_p99_s"].worse) == (
        pytest.approx(5243e-6),
        "higher",
    )
    assert diagnostics["latency_max_s"] == pytest.approx(8306e-6)
    assert diagnostics["connect_errors"] == 0
    assert diagnostics["received_bytes_per_s"] == pytest.approx(8885158 / 1.004951)


def test_a_wrk_run_without_answers_or_with_http_errors_is_an_error_not_a_rate():
    refused = json.loads(WRK_JSON)
    refused.update(requests=0, errors={"connect": 4})
    with pytest.raises(ValueError, match="no request answered \\(4 connect errors\\)"):
        wl.Wrk().parse(json.dumps(refused).encode())
    missing = json.loads(WRK_JSON)
    missing["errors"]["status"] = 2062
    with pytest.raises(ValueError, match="2062 of 2062 answers were HTTP errors"):
        wl.Wrk().parse(json.dumps(missing).encode())
    with pytest.raises(ValueError):
        wl.Wrk().parse(b"Running 1s test @ http://127.0.0.1:1/\n")


def test_http_loopback_starts_httpd_on_loopback_before_wrk_and_stops_it_after():
    b = wl.BUILTIN["http-loopback"]
    assert b.tool == "wrk"
    tool = wl.TOOLS["wrk"]
    args = [a.replace("{port}", "23456") for a in b.args]
    argv = tool.argv("http-loopback", args, 2.5)
    # wrk takes whole seconds; bench's Lua script, then the built-in's threads,
    # connections and URL (the file the prelude writes).
    assert argv == [
        "wrk",
        "-d",
        "3s",
        "-s",
        rootfs.WRK_SCRIPT,
        "-t",
        "1",
        "-c",
        "4",
        f"http://127.0.0.1:23456/{wl.Wrk.FILE}",
    ]
    script = wl.command(argv, 2.5, tool.prelude(23456, 2.5), tool.postlude())[-1]
    serve = script.index("httpd -f -p 127.0.0.1:23456 -h /tmp/bench-www")
    run = script.index("wrk -d 3s")
    stop = script.index("kill $server")
    assert serve < run < stop
    # wrk starts once httpd listens (read inside the instance), not after a fixed pause.
    assert wl.wait_listening(23456) in script[serve:run]
    assert f"export {rootfs.WRK_RESULT_ENV}={wl.RESULT}" in script[:run]
    assert f"head -c 4096 /dev/zero >/tmp/bench-www/{wl.Wrk.FILE}" in script
    assert f"timeout -s KILL {int(2.5 + wl.GRACE_S)} httpd" in script
    assert "rm -rf /tmp/bench-www" in script[stop:]
    assert not wl.needs_network("wrk")  # loopback: no network, no server on the host


@pytest.mark.parametrize(
    "args",
    [
        ["-s", "/tmp/x.lua", "http://127.0.0.1/"],
        ["-s/tmp/x.lua"],
        ["-Ls", "/tmp/x.lua"],
        ["--script=/tmp/x.lua"],
        ["--scr", "/tmp/x.lua"],
        ["http://127.0.0.1/", "--", "arg"],
    ],
)
def test_wrk_options_that_run_a_script_are_refused(args):
    with pytest.raises(ValueError, match="script|Lua"):
        wl.TOOLS["wrk"].check_args(args)


def test_wrk_options_that_do_not_run_a_script_pass():
    # -H's value may hold an "s"; -c4s is not -s; --latency is not --script.
    wl.TOOLS["wrk"].check_args(["-t2", "-c4", "-H", "Host: s", "--latency", "--timeout", "5s"])
    sc = parse_scenario(
        "name: t\nplatforms:\n  - {name: c, backend: docker, image: workloads}\n"
        "workloads: {run: [{name: h, tool: wrk, args: ['-c8', 'http://127.0.0.1:{port}/']}]}\n"
    )
    assert sc.workloads is not None and sc.workloads.run[0].custom
    with pytest.raises(ScenarioError, match=r"run\[0\].args: wrk option 'script'"):
        parse_scenario(
            "name: t\nplatforms:\n  - {name: c, backend: docker, image: workloads}\n"
            "workloads: {run: [{name: h, tool: wrk, args: [-s, /x.lua]}]}\n"
        )


def test_the_workloads_image_packs_wrk_and_its_script_and_an_image_without_them_is_stale():
    assert "wrk" in rootfs.WORKLOAD_TOOLS
    lua = rootfs.WORKLOAD_ETC[rootfs.WRK_SCRIPT.lstrip("/")].decode()
    assert "function done(summary, latency, requests)" in lua
    assert f'os.getenv("{rootfs.WRK_RESULT_ENV}")' in lua
    assert "latency:percentile(99)" in lua
    digests = {rel: hashlib.sha256(d).hexdigest() for rel, d in rootfs.WORKLOAD_ETC.items()}
    current: images.Manifest = {
        "name": "workloads",
        "rootfs_sha256": "x",
        "rootfs_bytes": 1,
        "initramfs_bytes": 1,
        "busybox": "b",
        "kernel_source": "/nonexistent",
        "kernel_release": "r",
        "kernel_bytes": 1,
        "built_at": "t",
        "init_sha256": images.init_sha256("workloads"),
        "pvh_kernel": False,
        "net_modules": {"virtio_net": "x"},
        "tools": {t: {} for t in rootfs.WORKLOAD_TOOLS},
        "files_sha256": digests,
    }
    assert images.stale_reason(current) is None
    older = {**current, "tools": {t: {} for t in rootfs.WORKLOAD_TOOLS if t != "wrk"}}
    assert images.stale_reason(older) == "it lacks wrk"  # type: ignore[arg-type]
    edited = {**current, "files_sha256": {**digests, rootfs.WRK_SCRIPT.lstrip("/"): "0"}}
    assert images.stale_reason(edited) == "an older bench built it"  # type: ignore[arg-type]


FAKE = """name: app
repeat: 3
warmup: 0
settle: 0s
workloads:
  duration: 2s
  run: [randmem, seqread, seqwrite, randread, http-loopback]
platforms:
  - {name: native, backend: fake, kind: native, work_rate: 1000, work_spread: 0.01}
  - {name: runc, backend: fake, kind: container, work_rate: 500, work_spread: 0.01}
"""


def test_the_table_shows_sequential_bandwidth_random_iops_and_the_application():
    _, sink, _ = run_fake(FAKE)
    section = report_wl.build("app", sink.samples)
    assert section is not None and not section.failures
    rows = {(r.platform, r.workload, r.figure): r for r in section.rows}
    assert rows["runc", "randmem", "vm.bogo_ops_per_s"].ratio == pytest.approx(0.5, rel=0.03)
    assert rows["runc", "seqread", "read_bytes_per_s"].ratio == pytest.approx(0.5, rel=0.03)
    assert rows["runc", "seqwrite", "write_bytes_per_s"].unit == "bytes/s"
    assert rows["runc", "http-loopback", "requests_per_s"].ratio == pytest.approx(0.5, rel=0.03)
    # A latency's ratio: runc's round trips take twice native's.
    assert rows["runc", "http-loopback", "latency_p99_s"].ratio == pytest.approx(2, rel=0.03)
    shown = {
        (c["platform"], c["workload"], str(c["figure"]).split(" ")[0]): c
        for c in report_wl.display_rows(section)
    }
    assert ("runc", "seqread", "read_bytes_per_s") in shown
    assert ("runc", "seqread", "read_iops") not in shown  # a diagnostic of a sequential job
    assert ("runc", "randread", "read_iops") in shown
    assert ("runc", "randread", "read_bytes_per_s") not in shown  # in the CSV only
    for figure in ("requests_per_s", "latency_p50_s", "latency_p99_s"):
        assert ("runc", "http-loopback", figure) in shown
    cell = shown["native", "http-loopback", "requests_per_s"]
    assert cell["median"] == "1,000 requests/s"
    assert str(cell["figure"]).endswith("(higher is better)")
    assert shown["native", "seqread", "read_bytes_per_s"]["median"].endswith("/s")
    assert shown["runc", "http-loopback", "latency_p50_s"]["median"] == "2.00 ms"
    assert shown["runc", "randmem", "vm.bogo_ops_per_s"]["ratio to native (95% CI)"].startswith(
        "0.5"
    )
    csv = {(r["workload"], r["figure"]) for r in report_wl.numbers(section)}
    assert ("randread", "read_bytes_per_s") in csv


def test_the_overhead_row_and_the_ratio_plot_take_the_new_figures(tmp_path):
    import subprocess
    import sys

    from bench.report import plots, runs_in, tables
    from bench.report.frame import load_frames
    from bench.report.model import build_model

    # runc at 1/20 of native: ratios from 0.05 to 20 (the latency's) span 400-fold.
    text = FAKE.replace("repeat: 3", "repeat: 2").replace("work_rate: 500", "work_rate: 50")
    scenario = tmp_path / "app.yaml"
    scenario.write_text(text)
    subprocess.run(
        [sys.executable, "-m", "bench", "run", str(scenario), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (run,) = (p.parent for p in tmp_path.rglob("samples.jsonl"))
    frames = load_frames(runs_in([run]))
    (classic,) = build_model(frames).classic
    cell = classic.table.loc[tables.RUNTIME_OVERHEAD, "runc"]
    # IOPS: randread's only (a sequential job has none); disk bw: the sequential jobs'.
    for part in ("random memory 0.05", "IOPS 0.05", "disk bw 0.05", "HTTP 0.05"):
        assert part in cell, cell
    fig = plots.workload_ratios(frames)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and "(log scale)" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "runc · http-loopback: requests_per_s (n=2, higher is better)" in labels
    assert not any("seqread: read_iops" in lbl for lbl in labels)


def test_the_app_benchmark_reads_each_workload_row_and_a_miss_as_missed():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import app  # noqa: PLC0415  (benchmarks/ is not a package)

    _, sink, _ = run_fake(FAKE)
    section = report_wl.build("app", sink.samples)
    assert section is not None
    # seqread and randread both give read_bytes_per_s: the row is the workload's.
    seq = app.row(section, "runc", "seqread", "read_bytes_per_s")
    rnd = app.row(section, "runc", "randread", "read_bytes_per_s")
    assert seq is not None and rnd is not None and seq.median > rnd.median
    # runc at half native: out of a 10 % band, and below native.
    assert app.within_few_percent(seq, band=app.BAND).startswith("missed: ratio 0.50")
    assert app.near(section, "runc", "seqread", "read_bytes_per_s", app.BAND).startswith(
        "missed: ratio 0.50"
    )
    assert app.below(section, "seqread", "read_bytes_per_s", "runc", "native").startswith(
        "met: runc/native 0.50"
    )
    assert app.below(section, "seqread", "read_bytes_per_s", "native", "runc").startswith("missed")
    assert app.below(section, "seqread-volume", "read_bytes_per_s", "runc", "native") == (
        "not measured"
    )


def test_the_readme_lists_every_built_in_workload_with_its_pinned_options():
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for name, b in wl.BUILTIN.items():
        assert f"| `{name}` | {b.tool} `{' '.join(b.args)}` | {b.doc} |" in readme, name


def test_a_guest_brings_its_loopback_up_before_it_serves_commands():
    # In a VM without network: user, lo stays down and every loopback workload's
    # client found "Network is unreachable"; natively PID 1 is the host's init (never
    # touched), in a container lo is up already.
    init = rootfs.WORKLOAD_INIT_SCRIPT
    assert "[ $$ -eq 1 ] && ip link set lo up 2>/dev/null" in init
    assert init.index("ip link set lo up 2>/dev/null") < init.index("while read -r word job")
    assert "ip link set lo up 2>/dev/null" not in rootfs.INIT_SCRIPT  # the boot image's

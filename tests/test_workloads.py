"""Workloads (issue 23 §1): the tools' parsers on their real output, the scenario keys,
a fake run through the runner's measurement seam, the ratios to native with their
intervals, and the emulated marking. No engine: the fake backend's run_in answers in
each tool's own format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.backends.base import Backend, ExecResult, Instance
from bench.machines import rootfs
from bench.machines.console import Console
from bench.measurements import workloads as wl
from bench.model.errors import ImageError, ScenarioError
from bench.model.records import Sample, WorkloadRun
from bench.plan.scenario import parse_scenario
from bench.report import workloads as report_wl
from tests.helpers import run_fake

# stress-ng 0.15.06's --yaml on this host (--switch 1 -t 3 --metrics), as written.
STRESS_NG_YAML = b"""---
system-info:
      stress-ng-version: 0.15.06
      cpus: 2
metrics:
    - stressor: switch
      bogo-ops: 540709
      bogo-ops-per-second-usr-sys-time: 286524.207104
      bogo-ops-per-second-real-time: 180190.751900
      wall-clock-time: 3.000759
      user-time: 0.231013
      system-time: 1.656119
      cpu-usage-per-instance: 62.888492
      max-rss: 2548
      nanosecs-per-context-switch-pipe-method: 5547.390771
...
"""

# fio 3.33's --output-format=json, cut to the keys bench reads (a randread job).
FIO_JSON = {
    "fio version": "fio-3.33",
    "jobs": [
        {
            "jobname": "randread",
            "job options": {"rw": "randread", "bs": "4k", "direct": "1", "ioengine": "psync"},
            "read": {
                "io_bytes": 160284672,
                "iops": 19564.95769,
                "bw_bytes": 80138066,
                "clat_ns": {"percentile": {"99.000000": 230400}},
            },
            "write": {"io_bytes": 0, "iops": 0.0, "bw_bytes": 0},
        }
    ],
}


def test_stress_ng_yaml_gives_rates_with_units_and_directions():
    figures, diagnostics = wl.StressNg().parse(STRESS_NG_YAML)
    by = {f.figure: f for f in figures}
    assert by["switch.bogo_ops_per_s"].value == pytest.approx(180190.7519)
    assert (by["switch.bogo_ops_per_s"].unit, by["switch.bogo_ops_per_s"].worse) == (
        "ops/s",
        "lower",
    )
    # A time per switch: more is worse.
    assert (by["switch.ns_per_switch"].unit, by["switch.ns_per_switch"].worse) == ("ns", "higher")
    # The CPU-time rate is kept, but only as a diagnostic (kernels account time apart).
    assert "switch.bogo_ops_per_cpu_s" in diagnostics
    assert diagnostics["switch.cpu_usage_pct"] == pytest.approx(62.888492)


def test_fio_json_gives_the_directions_the_job_did():
    figures, diagnostics = wl.Fio().parse(json.dumps(FIO_JSON).encode())
    by = {f.figure: f for f in figures}
    assert set(by) == {"read_iops", "read_bytes_per_s", "read_clat_p99_s"}  # no write I/O
    assert by["read_iops"].value == pytest.approx(19564.95769)
    assert by["read_clat_p99_s"].value == pytest.approx(230400e-9)
    assert by["read_clat_p99_s"].worse == "higher"
    assert diagnostics["direct"] == "1"


def test_a_result_without_figures_is_an_error_not_zero():
    with pytest.raises(ValueError, match="no metrics"):
        wl.StressNg().parse(b"---\nsystem-info: {}\n...\n")
    with pytest.raises(ValueError, match="no I/O"):
        wl.Fio().parse(json.dumps({"jobs": [{"read": {"io_bytes": 0}}]}).encode())


def test_the_command_bounds_the_tool_and_returns_its_result_file():
    argv = wl.TOOLS["stress-ng"].argv("cpu", ["--cpu", "1"], 5)
    assert argv == ["stress-ng", "--cpu", "1", "--metrics", "-t", "5s", "--yaml", wl.RESULT]
    cmd = wl.command(argv, 5)
    assert cmd[:2] == ["/bin/sh", "-c"]
    assert f"timeout -s KILL {5 + wl.GRACE_S} stress-ng --cpu 1" in cmd[2]
    assert f"cat {wl.RESULT}" in cmd[2]


BASE = "name: t\nplatforms:\n  - {name: n, backend: native, image: workloads}\n"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("workloads: {run: [cpux]}", "run[0].name: unknown workload 'cpux' (built in: cpu"),
        ("workloads: {run: [{name: x, tool: top, args: []}]}", "run[0].tool: unknown tool 'top'"),
        ("workloads: {run: [{name: x, tool: fio}]}", "run[0].args: tool: fio needs args:"),
        ("workloads: {duration: 90s, run: [cpu]}", "workloads.duration: a workload runs 1s to 30s"),
        ("workloads: {run: [cpu, cpu]}", "workloads.run: workload name 'cpu' is used twice"),
        ("workloads: {run: [{name: cpu, args: [x]}]}", "args: needs tool:"),
    ],
)
def test_workload_keys_are_refused_in_one_line(block, message):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(BASE + block)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_built_in_workload_resolves_to_its_pinned_tool_and_args():
    sc = parse_scenario(
        BASE + "workloads:\n  duration: 3s\n  run: [stream, {name: randread, duration: 4s}]\n"
    )
    assert sc.workloads is not None
    stream, randread = sc.workloads.run
    assert (stream.tool, stream.args) == ("stress-ng", list(wl.BUILTIN["stream"].args))
    assert "--stream-l3-size" in (stream.args or [])
    assert [sc.workloads.duration_of(w) for w in sc.workloads.run] == [3.0, 4.0]
    assert randread.tool == "fio"


def test_native_takes_only_a_bench_image():
    with pytest.raises(ScenarioError, match="native runs a bench image's own tree"):
        parse_scenario("name: t\nplatforms:\n  - {name: n, backend: native, image: alpine}\n")


FAKE = """name: wl
repeat: 4
warmup: 0
settle: 0s
workloads:
  duration: 2s
  run: [cpu, randread]
platforms:
  - {name: native, backend: fake, kind: native, work_rate: 1000, work_spread: 0.01}
  - {name: runc, backend: fake, kind: container, work_rate: 900, work_spread: 0.01}
  - {name: microvm, backend: fake, kind: microvm, accel: tcg, work_rate: 20}
"""


def _samples():
    _, sink, backends = run_fake(FAKE)
    return sink.samples, backends


def test_each_instance_runs_every_workload_through_the_measurement_seam():
    samples, backends = _samples()
    assert len(samples) == 12  # 3 platforms x 4 repeats, one instance each
    for s in samples:
        Sample.model_validate(s)
        runs = [WorkloadRun.model_validate(r) for r in s["extras"]["workloads"]]
        assert [r.workload for r in runs] == ["cpu", "randread"]
        assert all(r.error is None and r.figures for r in runs)
        # Emulated exactly when the instance ran under TCG.
        assert all(r.emulated == (s["platform"] == "microvm") for r in runs)
    assert backends["runc"].run_in_calls == 8


def test_ratios_to_native_with_an_interval_and_no_ratio_when_emulated():
    samples, _ = _samples()
    section = report_wl.build("wl", samples)
    assert section is not None and section.native == "native"
    rows = {(r.platform, r.figure): r for r in section.rows}
    runc = rows["runc", "cpu.bogo_ops_per_s"]
    assert runc.n == 4
    assert runc.ratio == pytest.approx(0.9, rel=0.02)
    assert runc.ratio_low is not None and runc.ratio_high is not None
    assert runc.ratio_low <= runc.ratio <= runc.ratio_high
    assert rows["runc", "read_iops"].ratio == pytest.approx(0.9, rel=0.02)
    assert rows["native", "cpu.bogo_ops_per_s"].why_no_ratio == "baseline"
    vm = rows["microvm", "cpu.bogo_ops_per_s"]
    assert vm.emulated and vm.ratio is None and "emulated" in (vm.why_no_ratio or "")
    cells = {(c["platform"], c["workload"]): c for c in report_wl.display_rows(section)}
    assert cells["microvm", "cpu"]["median"].endswith("(emulated)")
    assert cells["microvm", "cpu"]["ratio to native (95% CI)"].startswith("emulated")
    assert cells["runc", "cpu"]["ratio to native (95% CI)"].startswith("0.9")
    # The table shows headline figures; the CSV rows keep every one.
    assert all(not c["figure"].startswith("read_bytes") for c in cells.values())
    assert any(r["figure"] == "read_bytes_per_s" for r in report_wl.numbers(section))


def test_without_a_native_platform_there_is_no_ratio():
    samples, _ = _samples()
    section = report_wl.build("wl", [s for s in samples if s["platform"] != "native"])
    assert section is not None and section.native is None
    assert all(r.ratio is None for r in section.rows)
    assert report_wl.build("wl", [{"platform": "x", "extras": {}}]) is None


def test_the_bootstrap_interval_covers_the_ratio_and_needs_two_repeats():
    rng = np.random.default_rng(0)
    base = [100.0, 102.0, 98.0, 101.0, 99.0]
    other = [50.0, 51.0, 49.0, 50.5, 49.5]
    low, high = report_wl.ratio_interval(other, base, rng) or (0, 0)
    assert low < 0.5 < high and high - low < 0.05
    assert report_wl.ratio_interval([1.0], base, rng) is None


class NoExec(Backend):
    """A backend without run_in (a VM without a guest agent)."""

    kind = "vm"

    def prepare(self, **kw):  # pragma: no cover - never called
        return {}

    create = start = destroy = remove_leftover = prepare  # type: ignore[assignment]

    def leftovers(self, run_id=None):  # pragma: no cover
        return []


class Exits(NoExec):
    def run_in(self, inst, argv, timeout_s=60.0):
        return ExecResult(1, b"", b"stress-ng: error: [1] unrecognized option\n")


def _inst():
    return Instance(name="i", run_id="r", platform="p", console=Console("BENCH_READY"))


def test_a_workload_that_cannot_run_says_why_in_its_record():
    from bench.backends.fake import FakeSettings

    settings = FakeSettings(name="p", backend="fake")
    run = wl.run_workload(NoExec(settings), _inst(), "cpu", "stress-ng", ["--cpu", "1"], 2)
    assert run.figures == [] and "cannot run a command inside its instances" in (run.error or "")
    run = wl.run_workload(Exits(settings), _inst(), "cpu", "stress-ng", ["--cpu", "1"], 2)
    assert (
        run.rc == 1
        and run.error == "stress-ng exited with 1: stress-ng: error: [1] unrecognized option"
    )
    section = report_wl.build("r", [{"platform": "p", "extras": {"workloads": [run.model_dump()]}}])
    assert section is not None and section.failures == [f"p cpu: {run.error}"]


def test_the_loader_closure_parser():
    text = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f)\n"
        "\tlibceph-common.so.2 => /usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2 (0x1)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n"
    )
    paths = rootfs.parse_closure(text, "fio")
    assert paths == [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2",
        "/lib64/ld-linux-x86-64.so.2",
    ]
    # Merged /usr: /lib and /lib64 go under usr/, as Debian's symlinks point.
    assert [rootfs.image_path(p) for p in paths] == [
        "usr/lib/x86_64-linux-gnu/libm.so.6",
        "usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2",
        "usr/lib64/ld-linux-x86-64.so.2",
    ]
    with pytest.raises(ImageError, match="fio needs librbd.so.1"):
        rootfs.parse_closure("\tlibrbd.so.1 => not found\n", "fio")


def test_platforms_take_turns_in_a_workload_run():
    _, sink, _ = run_fake(FAKE)
    order = [(s["platform"], s["repeat"]) for s in sink.samples]
    assert order[:4] == [("native", 0), ("runc", 0), ("microvm", 0), ("native", 1)]


def test_workloads_refuse_a_density_search():
    with pytest.raises(ScenarioError, match="workloads: workloads run at fixed counts"):
        parse_scenario(BASE + "density: {max: 8}\nworkloads: {run: [cpu]}\n")


def test_a_guest_answer_on_its_console_is_decoded_and_checked():
    import base64
    import hashlib

    from bench.backends import guest

    out, err = b'{"jobs": []}\n', b"warn\n"
    data = out + err
    body = base64.encodebytes(data).decode().splitlines()
    head = (
        f"BENCH_RESULT_BEGIN rc=3 out={len(out)} err={len(err)} "
        f"sha256={hashlib.sha256(data).hexdigest()}"
    )
    console = Console("BENCH_READY")
    console.feed(b"[ 0.1] booting\nBENCH_READY uptime=1 kernel=k\n")
    console.expect_result()
    # The echoed command and a kernel line come first; the answer's lines are collected.
    answer = ["BENCH_EXEC c2ggLWMgdHJ1ZQ==", "[ 9.9] random: crng init done", head, *body]
    console.feed(("\r\n".join(answer) + "\r\nBENCH_RESU").encode())
    console.feed(b"LT_END\r\n")
    lines = console.wait_result(1.0)
    assert lines is not None and lines[0] == head
    assert guest.decode_result(lines) == ExecResult(3, out, err)
    # A line cut by a kernel message: the digest no longer matches.
    garbled = [head, body[0][:-4] + "[ 12.0] x", "BENCH_RESULT_END"]
    with pytest.raises(ImageError, match="garbled"):
        guest.decode_result(garbled)
    assert guest.exec_line(["sh", "-c", "true"]) == b"BENCH_EXEC c2ggLWMgdHJ1ZQ==\n"


def test_a_closed_console_gives_no_answer():
    console = Console("BENCH_READY")
    console.feed(b"BENCH_READY\n")
    console.expect_result()
    console.close("qemu exited")
    assert console.wait_result(5.0) is None


def test_the_workloads_image_init_serves_commands_and_the_busybox_one_does_not():
    assert "BENCH_EXEC" in rootfs.WORKLOAD_INIT_SCRIPT
    assert "BENCH_EXEC" not in rootfs.INIT_SCRIPT  # the boot benchmarks' image is unchanged
    # Natively PID 1 is the host's init: the console level is only set by a guest's PID 1.
    assert "[ $$ -eq 1 ] && dmesg -n 1" in rootfs.WORKLOAD_INIT_SCRIPT


def test_native_leftovers_are_found_by_their_owner_file_and_removed(tmp_path, monkeypatch):
    from bench.backends.native_backend import OWNER_FILE, NativeBackend, NativeSettings

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    base = tmp_path / "native" / "bench-r1-n-s0-0"
    (base / "root" / "tmp").mkdir(parents=True)
    (base / OWNER_FILE).write_text(
        json.dumps({"run_id": "r1", "platform": "n", "owner_pid": "4242", "owner_host": "h"})
    )
    (tmp_path / "native" / "not-bench").mkdir()  # not bench's: never listed
    backend = NativeBackend(NativeSettings(name="n", backend="native", image="workloads"))
    [found] = backend.leftovers()
    assert (found.name, found.run_id, found.owner_pid, found.owner_host) == (
        "bench-r1-n-s0-0",
        "r1",
        4242,
        "h",
    )
    assert backend.leftovers("other-run") == []
    backend.remove_leftover(found)
    assert not base.exists() and backend.leftovers() == []


DOCKER = "name: t\nplatforms:\n  - {name: c, backend: docker, image: workloads}\n"


@pytest.mark.parametrize(
    "args",
    [
        "[--rw=write, --filename=/dev/sda]",  # the host's disk, as root
        "[--rw=read, --directory=/proc]",
        "[--rw=read, --exec_prerun=reboot]",
        "[--rw=read, --ioengine=exec, --program=/bin/sh]",
        "[--rw=read, --write_lat_log=/etc/x]",
    ],
)
def test_fio_args_that_name_a_file_or_a_program_are_refused(args):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(DOCKER + f"workloads: {{run: [{{name: mine, tool: fio, args: {args}}}]}}")
    assert "workloads.run[0].args: fio " in str(e.value)
    assert "bench runs as root" in str(e.value) or "runs a program" in str(e.value)


def test_stress_ng_args_that_name_a_file_are_refused_and_others_pass():
    with pytest.raises(ScenarioError, match=r"run\[0\].args: stress-ng option 'yaml'"):
        parse_scenario(DOCKER + "workloads: {run: [{name: m, tool: stress-ng, args: [--yaml=/x]}]}")
    sc = parse_scenario(
        DOCKER + "workloads: {run: [{name: m, tool: stress-ng, args: [--vm, '1']}]}"
    )
    assert sc.workloads is not None and sc.workloads.run[0].custom


def test_a_native_platform_runs_only_built_in_workloads():
    with pytest.raises(ScenarioError) as e:
        parse_scenario(
            BASE + "workloads: {run: [cpu, {name: m, tool: stress-ng, args: [--vm, '1']}]}"
        )
    assert "workloads.run" in str(e.value) and "as root on this host" in str(e.value)
    assert "\n" not in str(e.value)
    sc = parse_scenario(BASE + "workloads: {run: [cpu, randread]}")
    assert sc.workloads is not None and not any(w.custom for w in sc.workloads.run)


def test_native_gives_its_init_only_a_few_device_nodes_not_the_hosts_dev():
    from bench.backends import native_backend

    assert "--bind /dev " not in native_backend.ENTER
    assert "tmpfs" in native_backend.ENTER
    assert set(native_backend.DEVICES) == {"null", "zero", "full", "random", "urandom", "tty"}


def test_volume_workloads_need_a_volume_and_write_there():

    text = "name: t\nworkloads: {{run: [randwrite-volume]}}\nplatforms:\n  - {platform}\n"
    with pytest.raises(ScenarioError, match="set volume: true on platform r"):
        parse_scenario(text.format(platform="{name: r, backend: docker, image: w}"))
    with pytest.raises(ScenarioError, match="set volume: true on platform v"):
        parse_scenario(text.format(platform="{name: v, backend: qemu, image: workloads}"))
    sc = parse_scenario(text.format(platform="{name: r, backend: docker, image: w, volume: true}"))
    assert sc.workloads is not None and sc.workloads.run[0].tool == "fio-volume"
    argv = wl.TOOLS["fio-volume"].argv("rw", ["--rw=randwrite"], 3)
    assert f"--filename={wl.VOLUME_FIO_FILE}" in argv and wl.VOLUME_FIO_FILE.startswith(
        "/bench-volume/"
    )
    # Its file is removed after the run, as the writable layer's is.
    assert (
        f"rm -f {wl.RESULT} {wl.OUTPUT} {wl.FIO_FILE} {wl.VOLUME_FIO_FILE}"
        in (wl.command(argv, 3)[-1])
    )
    # A scenario's args cannot move it elsewhere.
    with pytest.raises(ValueError, match="filename"):
        wl.TOOLS["fio-volume"].check_args(["--filename=/etc/passwd"])


def test_volume_figures_get_ratios_on_the_fake_backend():
    _, sink, _ = run_fake(
        "name: vol\nrepeat: 2\nwarmup: 0\nsettle: 0s\n"
        "workloads: {duration: 1s, run: [randread, randread-volume]}\nplatforms:\n"
        "  - {name: native, backend: fake, kind: native, volume: true, work_rate: 1000}\n"
        "  - {name: runc, backend: fake, kind: container, volume: true, work_rate: 500}\n"
    )
    section = report_wl.build("vol", sink.samples)
    assert section is not None
    rows = {(r.platform, r.workload, r.figure): r for r in section.rows}
    assert rows[("runc", "randread-volume", "read_iops")].ratio == pytest.approx(0.5)
    assert rows[("native", "randread-volume", "read_iops")].why_no_ratio == "baseline"

"""The qemu backend (QEMU launched directly, no libvirt) on the real QEMU, under TCG.

A step of two microvm guests through the runner; then `bench run` as a subprocess
interrupted mid-boot (SIGINT) and killed (kill -9, then `bench clean`). Each test
removes whatever its runs left in a `finally`: `bench clean --run`, then by hand.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from bench.backends.qemu_backend import InstancePaths, kill_group, qemu_root, read_state
from bench.machines import images
from tests.integration.bench_runs import assert_bench_clean, assert_interrupted, run_real

pytestmark = pytest.mark.qemu

QEMU_VM = """\
name: qemu
timeout: 120s
counts: [%(n)d]
settle: 0s
# No warm-up: the interrupt tests stop a measured step's boot, not a warm-up's.
warmup: 0
platforms:
  - {name: vm, backend: qemu, image: busybox, accel: tcg, memory: 192MiB}
"""


def qemu_states(run_prefix: str) -> list[tuple[Path, dict]]:
    """State files of the instances of runs whose id starts with `run_prefix`."""
    root = qemu_root()
    out = []
    for f in sorted(root.glob("*.json")) if root.is_dir() else []:
        state = read_state(f)
        if state and str(state.get("run_id", "")).startswith(run_prefix):
            out.append((f, state))
    return out


def qemu_pids(run_prefix: str) -> list[int]:
    """QEMU processes of those runs, found by the guest name on their command line."""
    needle = f"guest=bench-{run_prefix}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            args
            and args[0].endswith(b"qemu-system-x86_64")
            and any(a.startswith(needle) for a in args)
        ):
            pids.append(int(d.name))
    return pids


def running(pid: int) -> bool:
    """Alive and not a zombie: a killed orphan stays one until init reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def qemu_remaining(run_prefix: str) -> list[str]:
    out = [f"state {f} ({s['name']})" for f, s in qemu_states(run_prefix)]
    out += [f"dir {InstancePaths.of(s['name']).dir}" for _f, s in qemu_states(run_prefix)]
    out += [f"qemu pid {pid}" for pid in qemu_pids(run_prefix)]
    return out


@pytest.fixture
def qemu_purge(prefix, qemu_binary):  # noqa: F811
    """After the test: kill and remove by hand whatever `bench clean` did not."""
    try:
        yield
    finally:
        for pid in qemu_pids(prefix):
            kill_group(pid)
        for f, state in qemu_states(prefix):
            shutil.rmtree(InstancePaths.of(state["name"]).dir, ignore_errors=True)
            f.unlink(missing_ok=True)


def wait_instance(run_prefix: str, timeout: float = 60) -> tuple[Path, dict]:
    """Until an instance of the run has a live QEMU process (spawned, maybe booting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f, state in qemu_states(run_prefix):
            pid = state.get("pid")
            if pid and pid in qemu_pids(run_prefix):
                return f, state
        time.sleep(0.02)
    raise AssertionError(f"no QEMU of run {run_prefix}* within {timeout:g}s")


def connected_sockets(pid: int) -> int:
    """How many of this process's unix sockets are connected (/proc/net/unix state 03)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            link = fd.readlink().name if fd.is_symlink() else ""
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    except OSError:  # it exited
        return 0
    # Columns: Num RefCount Protocol Flags Type St Inode [Path]
    rows = [r.split() for r in Path("/proc/net/unix").read_text().splitlines()[1:]]
    return sum(1 for r in rows if len(r) >= 7 and r[5] == "03" and r[6] in inodes)


def wait_connected(pid: int, timeout: float = 60) -> None:
    """Until QEMU has connected to bench's serial and QMP sockets. Before that, a bench
    that dies takes QEMU with it: its connect finds no listener and QEMU exits."""
    deadline = time.monotonic() + timeout
    while connected_sockets(pid) < 2:
        assert time.monotonic() < deadline, f"QEMU {pid} did not connect within {timeout:g}s"
        time.sleep(0.02)


def test_qemu_step_of_two_microvms_under_tcg(qemu_binary):
    sink, engines, left = run_real(QEMU_VM % {"n": 2})
    assert left == []
    run_id = sink.samples[0]["run_id"]
    assert qemu_remaining(run_id) == []
    art = images.vm_artifacts("busybox")
    e = engines["vm"]
    assert e["engine"] == "qemu" and e["machine"] == "microvm" and e["accel"] == "tcg"
    assert e["qemu_version"] and e["guest_kernel"] == art.manifest["kernel_release"]
    assert len(sink.samples) == 2
    for s in sink.samples:
        assert s["ok"], (s["error"], s["console_tail"])
        assert s["kind"] == "microvm" and s["accel"] == "tcg"  # machine microvm
        assert 0 < s["create_s"] <= s["start_s"] < s["ready_s"] < 120
        # The guest's own kernel (the bench pair's), from its marker line.
        assert s["guest_kernel"] == art.manifest["kernel_release"]
        assert 0 < s["guest_uptime_s"] < s["ready_s"]
        # The process view is the QEMU process; no engine view; an initramfs writes nothing.
        assert s["processes"] == 1 and s["pss_bytes"] > 16 * 2**20
        assert s["engine_mem_bytes"] is None and "direct QEMU" in s["engine_mem_source"]
        assert s["disk_writable_bytes"] == 0
        print(
            f"{s['name']}: create_s {s['create_s']:.3f} start_s {s['start_s']:.3f} "
            f"ready_s {s['ready_s']:.2f} guest uptime {s['guest_uptime_s']:.2f} "
            f"pss {s['pss_bytes'] / 2**20:.0f} MiB"
        )


def test_sigint_while_qemu_boots_leaves_nothing(runs, prefix, qemu_purge):  # noqa: F811
    run = runs(QEMU_VM % {"n": 1})
    wait_instance(prefix)
    run.signal(signal.SIGINT)
    rc = run.wait()
    left = qemu_remaining(prefix)
    print(f"SIGINT during qemu boot: exit {rc} in {run.exit_s:.2f}s")
    assert_interrupted(run, rc)
    assert left == []


def test_kill9_then_bench_clean_reaps_qemu(runs, prefix, qemu_purge):  # noqa: F811
    run = runs(QEMU_VM % {"n": 1})
    _f, state = wait_instance(prefix)
    wait_connected(state["pid"])
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    # What kill -9 leaves: the QEMU (its own session: the kill did not reach it) and
    # its files.
    assert qemu_pids(prefix) == [state["pid"]]
    assert len(qemu_states(prefix)) == 1
    assert InstancePaths.of(state["name"]).dir.is_dir()
    clean = assert_bench_clean(run.run_id)
    assert "1 removed" in clean.stdout, clean.stdout
    # A QEMU whose console and QMP peer (bench) is gone may exit by itself meanwhile:
    # clean then finds only its files. Either way nothing may remain.
    assert any(f"qemu {what} {state['name']}" in clean.stdout for what in ("vm", "files")), (
        clean.stdout
    )
    assert qemu_remaining(prefix) == []
    assert not running(state["pid"])

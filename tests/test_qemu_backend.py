"""The qemu backend without QEMU: its command lines, state files and leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.backends import backend_class, settings_model
from bench.backends.base import Instance
from bench.backends.guest import BootSource
from bench.backends.probe_cache import ProbeResult
from bench.backends.qemu_backend import (
    InstancePaths,
    QemuBackend,
    QemuSettings,
    find_leftovers,
    guest_cmdline,
    host_tsc_khz,
    instance_state,
    is_instance_process,
    qemu_argv,
    read_state,
    write_state,
)
from bench.machines.console import Console
from bench.model.owner import hostname

KERNEL = (Path("/k/vmlinuz"), Path("/k/initramfs.cpio.gz"), "console=ttyS0 panic=-1")


def argv(machine: str = "microvm", **kw) -> list[str]:
    paths = InstancePaths.of("bench-r-p-0", Path("/var/lib/bench/qemu"))
    args = {"kernel": KERNEL, **kw}
    return qemu_argv(
        binary="qemu-system-x86_64",
        name="bench-r-p-0",
        machine=machine,
        accel="tcg",
        memory_bytes=256 * 2**20,
        vcpus=2,
        paths=paths,
        **args,
    )


def opt(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_registered_with_its_settings():
    assert backend_class("qemu") is QemuBackend
    assert settings_model("qemu") is QemuSettings
    assert QemuBackend.kind == "vm"


def test_microvm_kernel_boot_command_line():
    a = argv()
    # The RTC stays on: without it a stock guest kernel waits for it (bench.model.phases found
    # 3.5 s of a microvm's boot under TCG there).
    assert opt(a, "-machine") == ["microvm,x-option-roms=off"]
    assert opt(a, "-accel") == ["tcg"]
    assert opt(a, "-m") == ["256M"] and opt(a, "-smp") == ["2"]
    assert "-S" in a and "-nodefaults" in a and "-no-reboot" in a
    assert opt(a, "-kernel") == ["/k/vmlinuz"]
    assert opt(a, "-initrd") == ["/k/initramfs.cpio.gz"]
    assert opt(a, "-append") == ["console=ttyS0 panic=-1"]
    # QMP and the serial console: client sockets to bench's own listeners.
    chardevs = opt(a, "-chardev")
    assert any(c.startswith("socket,id=qmp0,path=") and c.endswith("qmp.sock") for c in chardevs)
    assert any(c.startswith("socket,id=ser0,path=") for c in chardevs)
    assert not any("server=on" in c for c in chardevs)
    assert opt(a, "-mon") == ["chardev=qmp0,mode=control"]
    assert opt(a, "-serial") == ["chardev:ser0"]
    assert opt(a, "-pidfile")[0].endswith("qemu.pid")
    assert opt(a, "-name") == ["guest=bench-r-p-0"]
    assert "-drive" not in a and "-device" not in a


def test_disk_boot_uses_virtio_mmio_on_microvm_and_pci_on_q35():
    disk = Path("/var/lib/bench/qemu/x/overlay.qcow2")
    micro = argv("microvm", kernel=None, disk=disk)
    assert "-kernel" not in micro
    assert opt(micro, "-drive") == [f"if=none,id=disk0,format=qcow2,file={disk}"]
    assert opt(micro, "-device") == ["virtio-blk-device,drive=disk0"]
    q35 = argv("q35", kernel=None, disk=disk)
    assert opt(q35, "-machine") == ["q35"]
    assert opt(q35, "-device") == ["virtio-blk-pci,drive=disk0,bootindex=0"]
    assert opt(argv("pc"), "-machine") == ["pc"]


def test_socket_paths_stay_short_whatever_the_name():
    long_name = "bench-" + "r" * 60 + "-" + "p" * 48 + "-s12-1023"
    p = InstancePaths.of(long_name, Path("/var/lib/bench/qemu"))
    assert len(str(p.qmp)) < 108 and len(str(p.serial)) < 108
    assert p == InstancePaths.of(long_name, Path("/var/lib/bench/qemu"))  # stable
    assert p.dir != InstancePaths.of(long_name + "x", Path("/var/lib/bench/qemu")).dir
    assert p.state.parent == p.dir.parent and p.state.stem == p.dir.name


def test_settings_keys_and_boot_sources():
    s = QemuSettings(name="q", backend="qemu")
    assert (s.machine, s.accel, s.vcpus, s.memory, s.image) == (
        "microvm",
        "auto",
        1,
        256 * 2**20,
        "busybox",
    )
    QemuSettings(name="q", backend="qemu", machine="q35", accel="tcg", memory="512MiB")
    with pytest.raises(ValidationError, match="machine"):
        QemuSettings(name="q", backend="qemu", machine="virt")
    with pytest.raises(ValidationError, match="either disk"):
        QemuSettings(name="q", backend="qemu", disk="/d.qcow2", kernel="/k")
    with pytest.raises(ValidationError, match="initrd: needs kernel"):
        QemuSettings(name="q", backend="qemu", initrd="/i")
    with pytest.raises(ValidationError, match="containers only"):
        QemuSettings(name="q", backend="qemu", command=["sh"])
    with pytest.raises(ValidationError, match="not a bench image"):
        QemuSettings(name="q", backend="qemu", image="alpine")


def test_state_file_round_trip(tmp_path):
    paths = InstancePaths.of("bench-run1-p-s0-0", tmp_path)
    inst = Instance("bench-run1-p-s0-0", "run1", "p", Console("BENCH_READY"))
    state = instance_state(inst, paths, 4242)
    write_state(paths.state, state)
    back = read_state(paths.state)
    assert back == state
    assert back["name"] == "bench-run1-p-s0-0" and back["run_id"] == "run1"
    assert back["pid"] == 4242 and back["owner_pid"] == str(os.getpid())
    assert back["owner_host"] == hostname() and back["dir"] == str(paths.dir)
    assert not paths.state.with_name(paths.state.name + ".tmp").exists()
    paths.state.write_text("{half")
    assert read_state(paths.state) is None
    paths.state.write_text('{"no": "name"}')
    assert read_state(paths.state) is None


def plant(root: Path, name: str, run_id: str, pid: int | None, **owner) -> InstancePaths:
    paths = InstancePaths.of(name, root)
    inst = Instance(name, run_id, "p", Console("BENCH_READY"))
    state = {**instance_state(inst, paths, pid), **owner}
    root.mkdir(parents=True, exist_ok=True)
    write_state(paths.state, state)
    paths.dir.mkdir()
    (paths.dir / "qemu.log").write_text("")
    return paths


@pytest.fixture
def fake_qemu():
    """A process whose command line looks like one instance's QEMU (python, not qemu)."""
    name = "bench-runq-p-s0-0"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", f"guest={name}"],
        start_new_session=True,
    )
    # Popen returns once exec started; on this kernel /proc/PID/cmdline can still read
    # empty for a moment after that.
    deadline = time.monotonic() + 5
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        yield name, proc
    finally:
        proc.kill()
        proc.wait()


def test_leftovers_from_state_files(tmp_path, fake_qemu):
    name, proc = fake_qemu
    root = tmp_path / "qemu"
    py = sys.executable
    assert is_instance_process(proc.pid, name, py)
    assert not is_instance_process(proc.pid, "bench-other", py)
    assert not is_instance_process(proc.pid, name, "qemu-system-x86_64")
    plant(root, name, "runq", proc.pid, owner_pid="1", owner_host=hostname())
    plant(root, "bench-runq-p-s0-1", "runq", None, owner_pid="1", owner_host=hostname())
    plant(root, "bench-far-p-s0-0", "far", 77, owner_pid="5", owner_host="far-host")
    orphan = tmp_path / "qemu" / "0123456789abcdef"
    orphan.mkdir()

    found = {x.name: x for x in find_leftovers(root, None, py)}
    assert found[name].kind == "vm" and found[name].run_id == "runq"
    assert found["bench-runq-p-s0-1"].kind == "files"  # never spawned: files only
    far = found["bench-far-p-s0-0"]
    assert far.kind == "files" and far.owner_remote and far.in_use
    assert found[str(orphan)].kind == "file" and found[str(orphan)].run_id is None
    assert len(found) == 4

    only = find_leftovers(root, "runq", py)
    assert sorted(x.name for x in only) == [name, "bench-runq-p-s0-1"]  # no orphan dirs


def test_remove_leftover_kills_that_qemu_and_removes_its_files(tmp_path, monkeypatch, fake_qemu):
    name, proc = fake_qemu
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    root = tmp_path / "qemu"
    paths = plant(root, name, "runq", proc.pid)
    # A state file whose pid is now some other program: never killed.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    other = plant(root, "bench-runq-p-s0-1", "runq", bystander.pid)
    backend = QemuBackend(QemuSettings(name="clean", backend="qemu"))
    backend.binary = sys.executable
    try:
        for left in backend.leftovers("runq"):
            backend.remove_leftover(left)
        assert proc.wait(10) == -9
        assert bystander.poll() is None
        assert not paths.state.exists() and not paths.dir.exists()
        assert not other.state.exists() and not other.dir.exists()
        assert backend.leftovers() == []
    finally:
        bystander.kill()
        bystander.wait()


def test_destroy_without_handle_goes_by_state_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    paths = plant(tmp_path / "qemu", "bench-r-p-s0-0", "r", None)
    backend = QemuBackend(QemuSettings(name="p", backend="qemu"))
    backend.destroy(Instance("bench-r-p-s0-0", "r", "p", Console("BENCH_READY")))
    backend.destroy(Instance("bench-r-p-s0-0", "r", "p", Console("BENCH_READY")))  # idempotent
    assert not paths.state.exists() and not paths.dir.exists()
    backend.close()


def test_accel_auto_without_kvm_is_tcg_without_a_probe(monkeypatch):
    import bench.backends.qemu_backend as qb

    monkeypatch.setattr(qb.os, "access", lambda _p, _m: False)
    backend = QemuBackend(QemuSettings(name="p", backend="qemu"))
    monkeypatch.setattr(backend, "_probe_kvm", lambda: pytest.fail("no probe without KVM"))
    assert backend.resolve_accel()[0] == "tcg"
    forced = QemuBackend(QemuSettings(name="p", backend="qemu", accel="kvm"))
    assert forced.resolve_accel()[0] == "kvm"


def test_accel_probe_result_is_cached(monkeypatch, tmp_path):
    import bench.backends.qemu_backend as qb

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(qb.os, "access", lambda _p, _m: True)
    backend = QemuBackend(QemuSettings(name="p", backend="qemu"))
    backend._version = "7.2.0"
    probes = []

    def probe():
        probes.append(time.monotonic())
        return ProbeResult(False, "no marker within 20s under kvm")

    monkeypatch.setattr(backend, "_probe_kvm", probe)
    said = []
    assert backend.resolve_accel(lambda: said.append(1)) == (
        "tcg",
        "no marker within 20s under kvm",
    )
    assert backend.resolve_accel(lambda: said.append(1))[0] == "tcg"
    assert len(probes) == 1 and said == [1]


VM_CPUINFO = "processor\t: 0\ncpu MHz\t\t: 2596.122\nflags\t\t: fpu tsc hypervisor\n"


def test_tsc_frequency_only_from_a_virtual_hosts_cpuinfo():
    assert host_tsc_khz(VM_CPUINFO) == 2596122
    # Bare metal: "cpu MHz" is the scaled current clock, not the TSC's.
    assert host_tsc_khz(VM_CPUINFO.replace(" hypervisor", "")) is None
    assert host_tsc_khz("processor\t: 0\n") is None


def test_microvm_under_tcg_is_told_its_tsc_frequency():
    base = "console=ttyS0 panic=-1"
    assert guest_cmdline(base, "microvm", "tcg", 2596122) == f"{base} tsc_early_khz=2596122"
    assert guest_cmdline(base, "microvm", "kvm", 2596122) == base
    assert guest_cmdline(base, "q35", "tcg", 2596122) == base  # HPET, PM timer: calibrates
    assert guest_cmdline(base, "microvm", "tcg", None) == base
    own = f"{base} tsc_early_khz=1000"
    assert guest_cmdline(own, "microvm", "tcg", 2596122) == own


def test_a_qemu_that_exits_at_once_fails_create_with_its_reason(tmp_path, monkeypatch):
    """A program that exits instead of connecting (here `false`): create fails fast with
    its exit status, and destroy leaves no file behind."""
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path))
    backend = QemuBackend(QemuSettings(name="p", backend="qemu", accel="tcg"))
    backend.binary = "false"
    backend._boot = BootSource({}, KERNEL)
    inst = Instance("bench-r-p-s0-0", "r", "p", Console("BENCH_READY"))
    try:
        t0 = time.monotonic()
        with pytest.raises(Exception, match="qemu exited before connecting: exit status 1"):
            backend.create(inst)
        assert time.monotonic() - t0 < 10
        assert [x.kind for x in backend.leftovers("r")] == ["files"]
        backend.destroy(inst)
        assert backend.leftovers() == []
        assert list((tmp_path / "qemu").iterdir()) == []
    finally:
        backend.close()

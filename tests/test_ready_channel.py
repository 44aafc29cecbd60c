"""ready: {channel: debugcon}: readiness by a byte on QEMU's debug port instead of the
serial marker, and `console: false` (no kernel console on the UART). The Console's
rule, the runner's plumbing on the fake backend, the keys' validation, and what each
VM backend asks of QEMU/libvirt and of the guest (its command line and its init)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.backends.guest import boot_cmdline, resolve_boot
from bench.backends.libvirt_backend import domain_xml
from bench.backends.qemu_backend import InstancePaths, qemu_argv
from bench.machines import images, rootfs
from bench.machines.console import Console
from bench.model.errors import MissingImage, ScenarioError
from bench.plan.scenario import parse_scenario
from tests.conftest import require_engine
from tests.helpers import run_fake

LOG_CMDLINE = images.DEFAULT_CMDLINE


def ticking(*times: float):
    t = iter(times)
    return lambda: next(t)


# -- the Console's rule --------------------------------------------------------------


def test_on_debugcon_the_port_byte_is_ready_and_the_marker_line_only_brings_fields():
    woke = []
    c = Console(
        "BENCH_READY",
        on_change=lambda: woke.append(1),
        clock=ticking(1.0, 2.0, 3.0),
        channel="debugcon",
    )
    c.feed(b"Run /init as init process\n")  # t=1.0
    c.port(b"R")  # t=2.0: ready
    assert c.ready_at == 2.0 and woke == [1]
    c.feed(b"BENCH_READY uptime=1.5 kernel=k\n")  # t=3.0: after ready, fields only
    assert c.ready_at == 2.0 and woke == [1]
    assert c.fields == {"uptime": "1.5", "kernel": "k"}
    assert [text for _, text in c.lines] == [
        "Run /init as init process",
        "BENCH_READY uptime=1.5 kernel=k",
    ]
    assert c.awaited == "byte on the debug port 0xe9"


def test_on_debugcon_the_marker_line_alone_is_not_ready_and_later_bytes_change_nothing():
    c = Console("BENCH_READY", clock=ticking(1.0, 2.0, 3.0), channel="debugcon")
    c.feed(b"BENCH_READY uptime=1 kernel=k\n")
    assert c.ready_at is None and not c.done and c.fields == {"uptime": "1", "kernel": "k"}
    c.port(b"R")
    c.port(b"R")  # a second byte, at 3.0: still ready at the first
    assert c.ready_at == 2.0


def test_on_the_console_channel_port_bytes_are_ignored():
    c = Console("BENCH_READY", clock=ticking(5.0))
    c.port(b"R")
    assert c.ready_at is None
    c.feed(b"BENCH_READY\n")
    assert c.ready_at == 5.0 and c.awaited == "BENCH_READY"


# -- the runner, on the fake backend -------------------------------------------------


FAKE_VM = (
    "name: t\ntimeout: 2s\nsettle: 0s\nwarmup: 0\ncounts: [2]\n"
    "platforms:\n  - name: f\n    backend: fake\n    kind: microvm\n    boot: 20ms\n"
)


def test_runner_times_ready_by_the_port_byte_not_the_marker_line():
    text = FAKE_VM + "    port_lead: 5ms\n    ready: {channel: debugcon}\n"
    _, sink, backends = run_fake(text, total=64 * 2**30)
    assert len(sink.samples) == 2
    for s in sink.samples:
        assert s["ok"] and s["error"] is None
        assert s["ready_s"] == pytest.approx(0.015, abs=1e-9)  # the byte, 5 ms before the line
        # The marker's line still came (after ready): its fields are kept.
        assert s["guest_uptime_s"] == 0.5 and s["guest_kernel"].startswith("fake-")
    assert backends["f"].live == {}


def test_runner_on_the_console_channel_ignores_a_port_byte():
    # The same fake, default channel: ready is the marker's line at 20 ms.
    _, sink, _ = run_fake(FAKE_VM + "    port_lead: 5ms\n", total=64 * 2**30)
    assert [s["ready_s"] for s in sink.samples] == [pytest.approx(0.02, abs=1e-9)] * 2


def test_a_silent_guest_on_debugcon_times_out_naming_the_port():
    text = FAKE_VM + "    silent: [1]\n    ready: {channel: debugcon}\n"
    _, sink, _ = run_fake(text, total=64 * 2**30)
    failed = [s for s in sink.samples if not s["ok"]]
    assert [s["index"] for s in failed] == [1]
    assert failed[0]["error"] == "no byte on the debug port 0xe9 within 2s"
    assert failed[0]["failure"] == "timeout"


def test_a_guest_that_exits_on_debugcon_says_what_it_did_not_send():
    text = FAKE_VM + "    crash: [0]\n    ready: {channel: debugcon}\n"
    _, sink, _ = run_fake(text, total=64 * 2**30)
    (failed,) = [s for s in sink.samples if not s["ok"]]
    assert failed["error"] == "fake instance exited before byte on the debug port 0xe9"


# -- validation ----------------------------------------------------------------------


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "s.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def platform(backend: str, extra: str) -> str:
    return f"name: x\nplatforms:\n  - name: p\n    backend: {backend}\n    image: busybox\n{extra}"


@pytest.mark.parametrize("backend", ["docker", "podman"])
def test_containers_refuse_the_debug_port_channel_in_one_line(backend):
    msg = _error(platform(backend, "    ready: {channel: debugcon}\n"))
    assert msg == (
        f"s.yaml:6: platforms[0].ready: channel debugcon is for VMs (qemu, libvirt): "
        f"a {backend} platform is ready by its console"
    )


@pytest.mark.parametrize("backend", ["qemu", "libvirt"])
def test_vm_backends_take_the_channel_and_console_off(backend):
    sc = parse_scenario(platform(backend, "    console: false\n    ready: {channel: debugcon}\n"))
    (p,) = sc.platforms
    assert p.ready.channel == "debugcon" and p.ready.marker == "BENCH_READY"
    assert p.console is False  # type: ignore[attr-defined]
    # The defaults: the serial marker, the console on.
    (q,) = parse_scenario(platform(backend, "")).platforms
    assert q.ready.channel == "console" and q.console is True  # type: ignore[attr-defined]


def test_console_off_needs_the_port_channel_and_a_kernel_boot():
    msg = _error(platform("qemu", "    console: false\n"))
    assert "platforms[0].console: false leaves no console for the marker" in msg
    assert "ready: {channel: debugcon}" in msg
    disk = platform(
        "qemu", "    disk: /d.qcow2\n    console: false\n    ready: {channel: debugcon}\n"
    )
    assert "which a disk: guest sets itself" in _error(disk.replace("    image: busybox\n", ""))


def test_an_unknown_channel_is_refused():
    assert "platforms[0].ready.channel" in _error(platform("qemu", "    ready: {channel: vsock}\n"))


def test_on_debugcon_lines_after_the_port_byte_are_read_until_the_marker_then_results():
    """Ready by the port, the console still reads lines for the marker's fields; after the
    marker it collects only the result block a command asked for (run_in over the serial)."""
    c = Console("BENCH_READY", clock=ticking(1.0, 2.0, 3.0, 4.0, 5.0, 6.0), channel="debugcon")
    c.port(b"R")  # t=1.0: ready before any line
    c.feed(b"Run /init as init process\n")  # t=2.0: still timed
    c.feed(b"BENCH_READY uptime=0.9\n")  # t=3.0: its fields
    assert c.ready_at == 1.0 and c.fields == {"uptime": "0.9"}
    assert [t for _, t in c.lines] == ["Run /init as init process", "BENCH_READY uptime=0.9"]
    c.expect_result()
    c.feed(b"echo x\nBENCH_RESULT_BEGIN\n")  # t=4.0: the echoed command is skipped
    c.feed(b"eA==\nBENCH_RESULT_END\n")  # t=5.0
    assert c.wait_result(1.0) == ["BENCH_RESULT_BEGIN", "eA==", "BENCH_RESULT_END"]
    assert len(c.lines) == 2  # lines after the marker are not timed


@pytest.mark.parametrize("kind", ["{tcp: 80}", "{exit: 0}", "{http: {port: 80}}"])
def test_the_port_channel_goes_with_a_console_line_kind_only(kind):
    rule = kind[:-1] + ", channel: debugcon}"
    msg = _error(platform("qemu", f"    ready: {rule}\n"))
    assert "channel debugcon decides readiness itself: give it with a marker or regex" in msg


def test_workloads_on_a_vm_without_a_console_are_refused():
    text = platform("qemu", "    console: false\n    ready: {channel: debugcon}\n")
    msg = _error(text + "workloads:\n  run: [cpu]\n")
    assert msg.startswith("s.yaml:8: workloads: a VM runs them through its serial console")
    assert "platform p boots without one (console: false)" in msg


def test_the_default_channel_is_not_stored_so_older_runs_compare_as_the_same_setup():
    (p,) = parse_scenario(platform("qemu", "")).platforms
    assert p.ready.model_dump() == {"marker": "BENCH_READY"}
    (q,) = parse_scenario(platform("qemu", "    ready: {channel: debugcon}\n")).platforms
    assert q.ready.model_dump() == {"marker": "BENCH_READY", "channel": "debugcon"}


# -- what the guest is asked: its command line and its init --------------------------


def settings(backend: str = "qemu", **kw):
    (p,) = parse_scenario(platform(backend, "")).platforms
    return p.model_copy(update=kw)


def test_cmdline_names_the_channel_for_init_and_drops_the_uart_when_console_is_off():
    port = settings(ready=settings().ready.model_copy(update={"channel": "debugcon"}))
    assert boot_cmdline(LOG_CMDLINE, port) == LOG_CMDLINE + " bench_ready=debugcon"
    # Given once only, even when the user's cmdline has it already.
    assert boot_cmdline("quiet bench_ready=debugcon", port) == "quiet bench_ready=debugcon"
    off = port.model_copy(update={"console": False})
    assert boot_cmdline(LOG_CMDLINE, off) == (
        "panic=-1 loglevel=7 no_timer_check 8250.nr_uarts=0 bench_ready=debugcon"
    )
    # The default: the command line as it was.
    assert boot_cmdline(LOG_CMDLINE, settings()) == LOG_CMDLINE


def test_the_init_writes_the_port_byte_only_when_the_kernel_hands_it_the_flag(tmp_path):
    """The image's real init, run by the host's sh up to its idle loop, with `dd` and
    `uname` stand-ins that record what they were asked."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dd").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/dd.args\ncat > {tmp_path}/dd.in\n'
    )
    (bindir / "uname").write_text("#!/bin/sh\necho 6.1-test\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    head = rootfs.INIT_SCRIPT.split("trap ")[0]  # all but the idle loop
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    plain = subprocess.run(["sh", "-c", head], env=env, capture_output=True, text=True)
    assert plain.returncode in (0, 1) and plain.stdout.startswith("BENCH_READY uptime=")
    assert not (tmp_path / "dd.args").exists()
    flagged = subprocess.run(
        ["sh", "-c", head], env={**env, "bench_ready": "debugcon"}, capture_output=True, text=True
    )
    assert flagged.returncode == 0 and flagged.stdout.startswith("BENCH_READY uptime=")
    assert flagged.stdout.rstrip().endswith("kernel=6.1-test")
    assert (tmp_path / "dd.args").read_text().split() == [
        "of=/dev/port",
        "bs=1",
        "seek=233",  # 0xe9
        "count=1",
        "conv=notrunc",
    ]
    assert (tmp_path / "dd.in").read_bytes() == b"R"


def test_the_initramfs_has_the_port_device_node():
    # CI installs busybox-static (make test): there, missing is a failure, not a skip.
    require_engine("busybox-static", Path("/bin/busybox").exists(), "/bin/busybox not found")
    entries = {e.path: e for e in rootfs.busybox_entries(Path("/bin/busybox"))}
    port = entries["dev/port"]
    assert (port.kind, port.rdev, port.mode) == ("chr", (1, 4), 0o600)
    # Only the initramfs: docker gives a container its own /dev.
    with tarfile.open(fileobj=io.BytesIO(rootfs.to_tar(list(entries.values())))) as tar:
        assert "dev/port" not in tar.getnames() and "init" in tar.getnames()


# -- what QEMU and libvirt are asked -------------------------------------------------


def test_qemu_gets_an_isa_debugcon_on_a_socket_of_its_own_only_when_asked():
    paths = InstancePaths.of("bench-r-p-0", Path("/var/lib/bench/qemu"))
    common = dict(
        binary="qemu-system-x86_64",
        name="bench-r-p-0",
        machine="microvm",
        accel="tcg",
        memory_bytes=256 * 2**20,
        vcpus=1,
        paths=paths,
    )
    args = qemu_argv(**common, debugcon=True)  # type: ignore[arg-type]
    assert f"socket,id=dbg0,path={paths.debugcon}" in args
    assert "isa-debugcon,iobase=0xe9,chardev=dbg0" in args
    assert paths.debugcon.parent == paths.dir and paths.debugcon != paths.serial
    plain = qemu_argv(**common)  # type: ignore[arg-type]
    assert not any("debugcon" in a or "dbg0" in a for a in plain)
    # The serial console stays, either way.
    assert "chardev:ser0" in args and "chardev:ser0" in plain


def test_libvirt_gets_a_serial_of_target_isa_debug_at_0xe9_only_when_asked():
    def serials(xml: str) -> list[ET.Element]:
        return ET.fromstring(xml).findall("devices/serial")

    kernel = (Path("/k/vmlinuz"), Path("/k/initrd"), "console=ttyS0")
    xml = domain_xml("bench-r-p-0", "r", "p", "tcg", 256 * 2**20, 1, kernel=kernel, debugcon=True)
    console, port = serials(xml)
    assert console.find("target").get("port") == "0"  # type: ignore[union-attr]
    target = port.find("target")
    assert target is not None and target.attrib == {"type": "isa-debug", "port": "1"}
    assert target.find("model").get("name") == "isa-debugcon"  # type: ignore[union-attr]
    assert port.find("address").attrib == {"type": "isa", "iobase": "0xe9"}  # type: ignore[union-attr]
    assert len(serials(domain_xml("bench-r-p-0", "r", "p", "tcg", 2**28, 1, kernel=kernel))) == 1


# -- an image built before the channel -----------------------------------------------


def test_an_image_built_with_another_init_is_rebuilt_or_refused(monkeypatch, tmp_path):
    manifest = {
        "rootfs_sha256": "a",
        "kernel_release": "k",
        "init_sha256": "old",
        "pvh_kernel": False,
    }
    art = images.VmArtifacts(tmp_path / "k", tmp_path / "i", LOG_CMDLINE, manifest)  # type: ignore[arg-type]
    fresh = images.VmArtifacts(
        tmp_path / "k",
        tmp_path / "i",
        LOG_CMDLINE,
        {**manifest, "init_sha256": "new"},  # type: ignore[typeddict-item]
    )
    cached = [art]
    built = []

    def build(name):
        built.append(name)
        cached[0] = fresh
        return fresh

    monkeypatch.setattr(images, "vm_artifacts", lambda name: cached[0])
    monkeypatch.setattr(images, "build_rootfs", build)
    monkeypatch.setattr(images, "init_sha256", lambda name="busybox": "new")

    class Here:
        def allocated_bytes(self, p):
            return 1

        def ensure_copy(self, a, b):
            return False

    port = settings(ready=settings().ready.model_copy(update={"channel": "debugcon"}))
    said: list[str] = []
    with pytest.raises(MissingImage, match="an older bench built it: run `bench images"):
        resolve_boot(port, Here(), False, said.append)  # type: ignore[arg-type]
    boot = resolve_boot(port, Here(), True, said.append)  # type: ignore[arg-type]
    assert built == ["busybox"] and boot.kernel is not None
    assert said == ["rebuilding the bench VM image 'busybox' (an older bench built it)..."]
    # Built by this bench: used as it is, whatever the channel.
    resolve_boot(settings(), Here(), True, said.append)  # type: ignore[arg-type]
    resolve_boot(port, Here(), False, said.append)  # type: ignore[arg-type]
    assert built == ["busybox"]


# -- the report's notes --------------------------------------------------------------


def test_the_report_names_the_platforms_not_ready_by_their_serial_marker():
    from bench.report.model import _readiness_notes

    text = (
        "name: x\nplatforms:\n"
        "  - {name: c, backend: docker, image: busybox}\n"
        "  - {name: serial, backend: qemu, image: busybox}\n"
        "  - {name: port, backend: qemu, image: busybox, ready: {channel: debugcon}}\n"
        "  - {name: quiet, backend: libvirt, image: busybox, console: false,\n"
        "     ready: {channel: debugcon}}\n"
    )
    # As metadata.json stores the scenario (bench.runner.recorder).
    stored = {"scenario": parse_scenario(text).model_dump(mode="json")}
    assert _readiness_notes(stored) == [
        "ready by a byte on the VM's debug port 0xe9, not by its serial marker: port, quiet",
        "booted with no kernel console on the UART (8250.nr_uarts=0), so no boot phase past "
        "the firmware is seen: quiet",
    ]
    # Runs of older versions (no channel stored) and runs without such platforms: none.
    assert _readiness_notes({"scenario": {"platforms": [{"name": "a", "ready": {}}]}}) == []
    assert _readiness_notes({}) == []


# -- libvirt's streams, on a stand-in for libvirt-python ----------------------------


class FakeStream:
    def __init__(self):
        self.queued: list[bytes] = []
        self.callback = None
        self.closed = False

    def eventAddCallback(self, events, cb, opaque):  # noqa: N802 (libvirt's name)
        self.callback = cb

    def eventRemoveCallback(self):  # noqa: N802
        self.callback = None

    def abort(self):
        self.closed = True

    def recv(self, n):
        return self.queued.pop(0) if self.queued else -2


class FakeDomain:
    def __init__(self):
        self.opened: dict[str | None, FakeStream] = {}

    def openConsole(self, dev, stream, flags):  # noqa: N802
        self.opened[dev] = stream

    def destroy(self):
        self.destroyed = True


class FakeConn:
    def __init__(self):
        self.domain = FakeDomain()

    def createXML(self, xml, flags):  # noqa: N802
        return self.domain

    def newStream(self, flags):  # noqa: N802
        return FakeStream()


FAKE_LIBVIRT = type(
    "FakeLibvirt",
    (),
    {
        "VIR_DOMAIN_START_PAUSED": 1,
        "VIR_STREAM_NONBLOCK": 1,
        "VIR_DOMAIN_CONSOLE_FORCE": 1,
        "VIR_STREAM_EVENT_READABLE": 1,
        "VIR_STREAM_EVENT_ERROR": 2,
        "VIR_STREAM_EVENT_HANGUP": 4,
        "libvirtError": RuntimeError,
    },
)


@pytest.mark.parametrize("debugcon", [True, False])
def test_libvirt_reads_the_debug_port_as_a_second_console_stream(monkeypatch, debugcon):
    from bench.backends import libvirt_backend
    from bench.backends.base import Instance

    (s,) = parse_scenario(platform("libvirt", "    ready: {channel: debugcon}\n")).platforms
    backend = libvirt_backend.LibvirtBackend(s)  # type: ignore[arg-type]
    conn = FakeConn()
    monkeypatch.setattr(libvirt_backend, "_ensure_event_loop", lambda: FAKE_LIBVIRT)
    monkeypatch.setattr(backend, "connect", lambda: conn)
    console = Console("BENCH_READY", clock=ticking(7.0), channel="debugcon")
    inst = Instance("bench-r-p-0", "r", "p", console)
    # The KVM probe creates its domain without the port (debugcon=False), whatever the
    # platform's channel: only the serial console is opened then.
    backend._create_xml(inst, "<domain/>", debugcon=debugcon)
    opened = conn.domain.opened
    assert sorted(opened, key=str) == ([None, "serial1"] if debugcon else [None])
    if not debugcon:
        return
    port = opened["serial1"]
    port.queued = [b"R"]
    port.callback(port, FAKE_LIBVIRT.VIR_STREAM_EVENT_READABLE, None)
    assert console.ready_at == 7.0
    # Teardown closes both streams, then destroys the domain.
    backend.destroy(inst)
    assert port.closed and opened[None].closed and conn.domain.destroyed
    assert "_port_stream" not in inst.info

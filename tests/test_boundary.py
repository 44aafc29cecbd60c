"""The boundary measurement without engines: /proc text parsed (hostile text included),
a planted /proc tree read through a Host, the fake backend's runs stored and tabled."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bench.backends.base import BoundaryView
from bench.backends.fake import FakeBackend
from bench.backends.libvirt_backend import domain_devices
from bench.backends.qemu_backend import qom_devices
from bench.machines.host import LocalHost, _read_text
from bench.measurements.boundary import (
    Boundary,
    ProcessFacts,
    boundary_markdown,
    boundary_table,
    capability_names,
    command_of,
    parse_id_map,
    parse_ns_link,
    parse_passwd,
    parse_status,
    read_process,
    reference_namespaces,
    syscalls_by,
)
from bench.model.records import Sample
from tests.helpers import FakeHost, run_fake

HOST_NS = {"cgroup": 10, "ipc": 11, "mnt": 12, "net": 13, "pid": 14, "time": 15, "user": 16}
HOST_NS["uts"] = 17
STATUS = """\
Name:\tsleep
Umask:\t0022
State:\tS (sleeping)
TracerPid:\t0
Uid:\t0\t1000\t0\t0
NSpid:\t8403\t1
CapEff:\t00000000a80425fb
NoNewPrivs:\t0
Seccomp:\t2
Seccomp_filters:\t1
"""
DOCKER_CAPS = [
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "net_bind_service",
    "net_raw",
    "sys_chroot",
    "mknod",
    "audit_write",
    "setfcap",
]


class PlantedHost(FakeHost):
    """A Host whose absolute paths are read under `root` (a planted /proc tree), the
    way LocalHost reads them; every path asked for is logged."""

    def __init__(self, root: Path, key: str = "planted"):
        super().__init__(list, key=key)
        self.root, self.asked = root, []

    def seccomp_programs(self, pid):
        # Every planted process: one program allowing read, write and exit_group.
        from tests.test_seccomp import THREE

        return [THREE]

    def _at(self, p: str) -> Path:
        self.asked.append(p)
        return self.root / p.lstrip("/")

    def read_files(self, paths):
        return {p: _read_text(self._at(p)) for p in paths}  # may raise on binary text

    def read_links(self, paths):
        out = {}
        for p in paths:
            try:
                out[p] = os.readlink(self._at(p))
            except OSError:
                out[p] = None
        return out


def plant_process(root: Path, pid: int | str, status: str | bytes, ns: dict, **files) -> None:
    d = root / "proc" / str(pid)
    (d / "ns").mkdir(parents=True)
    (d / "status").write_bytes(status if isinstance(status, bytes) else status.encode())
    for name, inode in ns.items():
        (d / "ns" / name).symlink_to(f"{name}:[{inode}]")
    for name, text in files.items():
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())


def plant_host(root: Path) -> None:
    plant_process(root, 1, "Name:\tinit\n", HOST_NS)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/x\n")
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-host\n")


def container_ns() -> dict:
    return {**HOST_NS, "ipc": 21, "mnt": 22, "net": 23, "pid": 24, "uts": 25}


# -- parsing ---------------------------------------------------------------------------------


def test_status_fields_and_capabilities_are_parsed_as_the_kernel_writes_them():
    st = parse_status(STATUS)
    assert (
        st["Seccomp"] == "2" and st["Seccomp_filters"] == "1" and st["CapEff"] == "00000000a80425fb"
    )
    assert "NSpid" not in st and "Umask" not in st  # only the fields bench reads
    assert capability_names(st["CapEff"]) == DOCKER_CAPS
    assert capability_names("0000000000000000") == []
    assert capability_names("1" + "0" * 11) == ["cap_44"]  # a bit without a name yet
    assert capability_names("zz") is None and capability_names(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00\x01garbage",
        "Seccomp:\nCapEff:\n",
        "Seccomp: two\nCapEff: -5\nUid: x\n",
        ":::\n\n" * 50,
        "Name:" + "A" * 100_000,
    ],
)
def test_garbage_status_text_never_raises(text):
    st = parse_status(text)
    assert isinstance(st, dict)
    capability_names(st.get("CapEff"))


def test_links_maps_passwd_and_cmdline():
    assert parse_ns_link("net:[4026531833]") == ("net", 4026531833)
    assert parse_ns_link("net:[x]") is None and parse_ns_link("garbage") is None
    assert parse_ns_link(None) is None
    assert parse_id_map("         0          0 4294967295\n") == [[0, 0, 4294967295]]
    assert parse_id_map("0 100000 65536\n1 2\n") is None  # one bad line: not read at all
    assert parse_id_map("-1 0 1") is None and parse_id_map(None) is None
    assert parse_passwd("root:x:0:0::/:/bin/sh\nbad\n:x:5:5\nnobody:x:65534:1") == {
        0: "root",
        65534: "nobody",
    }
    assert command_of("/usr/bin/runsc-sandbox\0--root=/x\0") == "runsc-sandbox"
    assert command_of("") is None and command_of(None) is None and command_of("\0\0") is None


def test_whose_kernel_answers_is_read_from_what_the_instance_reported():
    vmm = {"vmm": ProcessFacts(pid=9, command="qemu-system-x86_64")}
    sandbox = {"sandbox": ProcessFacts(pid=9, command="runsc-sandbox")}
    other = {"sandbox": ProcessFacts(pid=9, command="kata-agent")}
    container = {"container": ProcessFacts(pid=9)}
    assert syscalls_by("6.1", "6.1", container) == ("host kernel 6.1", None)
    assert syscalls_by("4.4.0", "6.1", sandbox) == (
        "gVisor's Sentry (runsc-sandbox), reports 4.4.0",
        None,
    )
    assert syscalls_by("5.0", "6.1", other)[0] == "sandbox kernel (kata-agent), reports 5.0"
    assert syscalls_by("6.2", "6.1", vmm)[0] == "guest kernel 6.2"
    assert syscalls_by("6.1", "6.1", vmm)[0] == "guest kernel 6.1 (the host's release)"
    # A container that does not see the host's release is said as read, not explained.
    assert syscalls_by("5.0", "6.1", container)[0] == "not the host's: reports 5.0 (host 6.1)"
    assert syscalls_by(None, "6.1", container) == (
        None,
        "the instance reported no kernel release at readiness",
    )
    assert syscalls_by("6.1", None, container)[1].startswith("the host's kernel release")


# -- reading a planted /proc --------------------------------------------------------------


def test_a_planted_container_process_is_read_with_its_namespaces(tmp_path):
    plant_host(tmp_path)
    plant_process(
        tmp_path,
        8403,
        STATUS,
        container_ns(),
        cmdline="sleep\x0060\x00",
        uid_map="0 0 4294967295\n",
    )
    host = PlantedHost(tmp_path)
    reference, label = reference_namespaces(host)
    assert reference == HOST_NS and label.startswith("/proc/1")
    facts, missing = read_process(host, "container", 8403, reference, {1000: "bench"})
    assert facts.model_dump(exclude_none=True) == {
        "pid": 8403,
        "command": "sleep",
        "uid": 1000,  # the effective uid, the second of Uid's four
        "user": "bench",
        "seccomp": "filter",
        "seccomp_filters": 1,
        "seccomp_syscalls_allowed": 3,  # the planted program: read, write, exit_group
        "cap_eff": "00000000a80425fb",
        "capabilities": DOCKER_CAPS,
        "no_new_privs": False,
        "tracer_pid": 0,
        "namespaces_not_shared": ["ipc", "mnt", "net", "pid", "uts"],
        "uid_map": [[0, 0, 4294967295]],
    }
    assert missing == {}


def test_without_proc_1_the_reference_is_benchs_own_namespaces(tmp_path):
    plant_process(tmp_path, "self", "", HOST_NS)
    ref, label = reference_namespaces(PlantedHost(tmp_path))
    assert ref == HOST_NS and label.startswith("bench's own")
    assert reference_namespaces(PlantedHost(tmp_path / "empty")) == ({}, "none readable")


def test_hostile_proc_files_are_not_read_with_why_and_never_raise(tmp_path):
    plant_host(tmp_path)
    # Binary garbage status and cmdline (not UTF-8), no uid_map, half the ns links broken.
    broken = {k: v for k, v in container_ns().items() if k in ("net", "pid")}
    plant_process(tmp_path, 77, b"\xff\xfe\x00Seccomp:\xff\n", broken, cmdline=b"\xff\xfe\x00")
    (tmp_path / "proc/77/ns/mnt").symlink_to("not a namespace")
    host = PlantedHost(tmp_path)
    facts, missing = read_process(host, "container", 77, HOST_NS, {})
    assert facts.pid == 77 and facts.seccomp is None and facts.command is None
    assert facts.namespaces_not_shared == ["net", "pid"]  # the two it could compare
    # Undecodable bytes read as U+FFFD (the host reads /proc text leniently, for smaps):
    # the why names the file either way.
    assert "/proc/77/status" in missing["container.seccomp"]
    assert missing["container.command"] == (
        "/proc/77/cmdline and the status Name unreadable or empty"
    )
    assert "container.uid_map" in missing
    assert missing["container.namespaces:cgroup,ipc,mnt,time,user,uts"]

    # Text that is text but not what the kernel writes: each fact says so.
    plant_process(tmp_path, 78, "Seccomp:\tlots\nUid:\t0\nCapEff:\tzz\nNoNewPrivs:\t7\n", {})
    facts, missing = read_process(host, "vmm", 78, HOST_NS, {})
    assert facts.seccomp is None and facts.cap_eff is None and facts.no_new_privs is None
    assert missing["vmm.seccomp"] == (
        "Seccomp in /proc/78/status is not what the kernel writes: 'lots'"
    )
    assert missing["vmm.seccomp_filters"].endswith("(Linux before 5.9 does not write it)")
    assert missing["vmm.namespaces_not_shared"] == "/proc/78/ns/* unreadable"

    # A process that is gone: every fact not read, with why.
    facts, missing = read_process(host, "vmm", 4242, HOST_NS, {})
    assert facts.model_dump(exclude_none=True) == {"pid": 4242}
    assert missing["vmm.no_new_privs"].endswith("(the process is gone, or not bench's to read)")


def test_local_host_reads_links():
    host = LocalHost()
    links = host.read_links(["/proc/self/ns/net", "/proc/0/ns/net"])
    assert parse_ns_link(links["/proc/self/ns/net"])[0] == "net"
    assert links["/proc/0/ns/net"] is None


# -- the measurement in a run --------------------------------------------------------------

SCENARIO = "name: t\ntimeout: 2s\nsettle: 0s\ncounts: [2]\nplatforms:\n"


def fake_run(tmp_path, monkeypatch, view, platforms="  - {name: f, backend: fake}\n"):
    plant_host(tmp_path)
    plant_process(tmp_path, 8403, STATUS, container_ns(), cmdline="sh\0", uid_map="0 0 1\n")
    host = PlantedHost(tmp_path)
    monkeypatch.setattr(FakeBackend, "boundary_view", lambda self, inst, h: view(inst))
    monkeypatch.setattr("tests.helpers.FakeHost", lambda live, **kw: host)
    _, sink, _ = run_fake(SCENARIO + platforms)
    return sink, host


def test_a_run_stores_each_instances_boundary_under_extras(tmp_path, monkeypatch):
    sink, _ = fake_run(tmp_path, monkeypatch, lambda inst: BoundaryView({"container": 8403}))
    assert len(sink.samples) == 2
    for s in sink.samples:
        Sample.model_validate(s)
        b = Boundary.model_validate(s["extras"]["boundary"])
        assert b.processes["container"].seccomp == "filter"
        # The fake's marker says kernel=fake-<i>, the planted host 6.1.0-host.
        assert b.syscalls_by == f"not the host's: reports {b.instance_kernel} (host 6.1.0-host)"
        assert b.not_read == {
            "devices": "the backend lists no devices",
            "container.user": "uid 1000 is not in the host's /etc/passwd",
        }
        assert b.read_s == 0.0  # on the run's virtual clock
    assert b.processes["container"].seccomp_syscalls_allowed == 3
    (row,) = boundary_table(sink.samples)
    assert row["seccomp"] == "filter, 1 filter: 3 host system calls allowed"
    assert row["namespaces not shared with the host"] == "ipc mnt net pid uts"
    assert row["capabilities"] == "14 (00000000a80425fb)"
    assert row["user namespace (uid map)"] == "0 0 1"
    assert row["user"] == "uid 1000" and row["host process"] == "container: sh"
    # Two instances that reported different releases: both said, with their counts.
    assert "(1 of 2)" in row["system calls answered by"]


@pytest.mark.parametrize("pid", ["1; rm -rf /", True, 3.0, -1, 0, "../1", None])
def test_a_pid_that_is_not_a_positive_int_is_never_put_in_a_path(tmp_path, monkeypatch, pid):
    sink, host = fake_run(tmp_path, monkeypatch, lambda inst: BoundaryView({"container": pid}))
    # /proc/meminfo: the step's host memory readings (Slab with MemAvailable), no pid in it.
    asked_about = [
        p
        for p in host.asked
        if not p.startswith(("/proc/1/", "/proc/self/")) and p != "/proc/meminfo"
    ]
    assert asked_about == ["/etc/passwd", "/proc/sys/kernel/osrelease"] * (len(asked_about) // 2)
    b = Boundary.model_validate(sink.samples[0]["extras"]["boundary"])
    assert b.processes == {} and "not a pid" in b.not_read["container.pid"]
    (row,) = boundary_table(sink.samples)
    assert row["seccomp"].startswith("not read (the backend gave")


def test_the_default_view_and_a_failing_engine_are_said_as_not_read(tmp_path, monkeypatch):
    def fails(inst):
        raise RuntimeError("engine gone\nsecond line")

    sink, _ = fake_run(tmp_path, monkeypatch, fails)
    b = Boundary.model_validate(sink.samples[0]["extras"]["boundary"])
    assert b.not_read["pids"] == "the engine did not say: engine gone"
    monkeypatch.undo()
    _, sink, _ = run_fake(SCENARIO + "  - {name: f, backend: fake}\n")
    (row,) = boundary_table(sink.samples)
    assert row["seccomp"] == (
        "not read (the FakeBackend does not say which host processes run its instances)"
    )


# -- the table from stored samples ---------------------------------------------------------


def test_old_and_hostile_stored_samples_become_not_read_rows():
    old = {"platform": "old", "n": 1, "ok": True, "extras": {}}
    bad = {"platform": "bad", "n": 1, "ok": True, "extras": {"boundary": {"processes": "x"}}}
    worse = {"platform": "worse", "n": 1, "ok": True, "extras": "not a mapping"}
    failed = {"platform": "down", "n": 1, "ok": False}
    rows = boundary_table([old, bad, worse, failed, 7, {"platform": None}], ["down", "old"])
    assert [r["platform"] for r in rows] == ["down", "old", "bad", "worse"]
    assert rows[0]["instances"] == "1 (none ready)"
    assert rows[1]["seccomp"].startswith("not read (not stored: a run from before")
    assert rows[2]["seccomp"].startswith("not read (stored facts unreadable")
    assert rows[3]["seccomp"].startswith("not read (not stored")
    assert boundary_table([], ["gone"])[0]["seccomp"] == "not read (no samples)"


def test_markdown_escapes_values_and_keeps_platform_order():
    b = Boundary(
        syscalls_by="guest kernel 6|1",
        processes={"vmm": ProcessFacts(pid=5, command="qemu", seccomp="disabled", uid=0)},
        devices={"virtio-mmio": 24, "isa-serial": 1},
        not_read={"vmm.user": "uid 0 is not in the host's /etc/passwd"},
    ).row()
    samples = [
        {"platform": "b", "ok": True, "extras": {"boundary": b}},
        {"platform": "a", "ok": True, "extras": {}},
    ]
    md = boundary_markdown(samples, ["a", "b"]).splitlines()
    assert md[0].startswith("| platform | instances | system calls answered by |")
    assert md[2].startswith("| a | 1 | not read (not stored")
    assert "guest kernel 6\\|1" in md[3] and "virtio-mmio x24, isa-serial" in md[3]
    assert "| VMM: qemu | uid 0 | disabled |" in md[3]


# -- the backends' device lists ----------------------------------------------------------------


def test_domain_devices_counts_the_live_xml_devices():
    xml = """<domain type='qemu'><name>x</name><devices>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <controller type='usb' index='0' model='piix3-uhci'/>
      <controller type='pci' index='0' model='pci-root'/>
      <serial type='pty'><target port='0'/></serial>
      <interface type='network'><model type='virtio'/></interface>
      <input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/>
      <memballoon model='virtio'/></devices></domain>"""
    assert domain_devices(xml) == {
        "controller pci pci-root": 1,
        "controller usb piix3-uhci": 1,
        "input keyboard ps2": 1,
        "input mouse ps2": 1,
        "interface network virtio": 1,
        "memballoon virtio": 1,
        "serial pty": 1,
    }
    assert domain_devices("<domain/>") == {}


class FakeQmp:
    """Answers qom-list-types and qom-list as QEMU does (shapes from a microvm)."""

    def __init__(self):
        self.asked = []

    async def execute(self, cmd, args=None):
        self.asked.append((cmd, (args or {}).get("path")))
        if cmd == "qom-list-types":
            return [{"name": "virtio-mmio"}, {"name": "isa-serial"}, {"name": "ioapic"}]
        return {
            "/machine": [{"name": "ioapic", "type": "child<ioapic>"}, {"name": "t", "type": "str"}],
            "/machine/unattached": [
                {"name": "device[1]", "type": "child<virtio-mmio>"},
                {"name": "device[2]", "type": "child<virtio-mmio>"},
                {"name": "io[0]", "type": "child<memory-region>"},
                {"name": "non-qdev-gpio[0]", "type": "child<irq>"},
                "garbage",
            ],
            "/machine/peripheral-anon": [{"name": "device[0]", "type": "child<isa-serial>"}],
        }.get(args["path"], [])


def test_qom_devices_counts_only_what_qemu_says_are_devices():
    qmp = FakeQmp()
    assert asyncio.run(qom_devices(qmp)) == {"ioapic": 1, "isa-serial": 1, "virtio-mmio": 2}
    assert qmp.asked[0] == ("qom-list-types", None)
    qmp = FakeQmp()
    asyncio.run(qom_devices(qmp, {"isa-serial"}))
    assert "qom-list-types" not in [c for c, _ in qmp.asked]  # the binary's answer, cached


def test_ssh_host_reads_links_in_one_round_trip(tmp_path, monkeypatch):
    """SshHost.read_links' script, run by a local sh (what the remote one would run)."""
    import subprocess

    from bench.machines.ssh_host import SshHost

    (tmp_path / "net").symlink_to("net:[4026531833]")
    odd = tmp_path / "it's; $(x)"
    odd.symlink_to("pid:[7]")
    host = SshHost("ssh://root@127.0.0.1")
    scripts = []

    def sh(script, timeout=0):
        scripts.append(script)
        p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
        return p.returncode, p.stdout, p.stderr

    monkeypatch.setattr(host, "_sh", sh)
    paths = [str(tmp_path / "net"), str(odd), str(tmp_path / "missing")]
    assert host.read_links(paths) == {
        paths[0]: "net:[4026531833]",
        paths[1]: "pid:[7]",
        paths[2]: None,
    }
    assert len(scripts) == 1 and host.read_links([]) == {}


def test_a_sandboxs_child_is_read_as_where_the_instances_code_runs(tmp_path, monkeypatch):
    """gVisor's ptrace platform: the Sentry's child (a stub with an empty command line)
    is traced by it; the row says so beside the sandbox's own facts."""
    sandbox = STATUS.replace("sleep", "exe").replace("Seccomp_filters:\t1", "Seccomp_filters:\t3")
    stub = sandbox.replace("TracerPid:\t0", "TracerPid:\t500")

    def plant(root):
        plant_process(root, 500, sandbox, HOST_NS, cmdline="runsc-sandbox\0--root=/x\0")
        plant_process(root, 501, stub, HOST_NS, cmdline="")
        for tid, kids in (("500", "501 "), ("502", ""), ("x", "9")):
            (root / "proc/500/task" / tid).mkdir(parents=True)
            (root / "proc/500/task" / tid / "children").write_text(kids)

    plant(tmp_path)

    class Listing(PlantedHost):
        def list_dir(self, path):
            return sorted(os.listdir(self._at(path)))

    monkeypatch.setattr("tests.test_boundary.PlantedHost", Listing)
    sink, _ = fake_run(tmp_path, monkeypatch, lambda inst: BoundaryView({"sandbox": 500}))
    b = Boundary.model_validate(sink.samples[0]["extras"]["boundary"])
    w = b.processes["workload"]
    assert (w.pid, w.command, w.tracer_pid, w.seccomp) == (501, "exe", 500, "filter")
    assert b.processes["sandbox"].command == "runsc-sandbox"
    (row,) = boundary_table(sink.samples)
    assert row["host process"] == (
        "sandbox: runsc-sandbox; the instance's code runs in its child exe, traced by it, "
        "seccomp filter"
    )
    # The sandbox's own (its child's filters are not read: it is traced by the sandbox).
    assert row["seccomp"] == "filter, 3 filters: 3 host system calls allowed"
    assert w.seccomp_syscalls_allowed is None


def test_a_sandbox_without_children_says_so(tmp_path, monkeypatch):
    sink, _ = fake_run(tmp_path, monkeypatch, lambda inst: BoundaryView({"sandbox": 8403}))
    b = Boundary.model_validate(sink.samples[0]["extras"]["boundary"])
    assert "workload" not in b.processes
    assert b.not_read["workload"] == "the sandbox's process (pid 8403) has no child"


def test_the_report_shows_the_boundary_and_the_classic_tables_isolation_row(tmp_path, monkeypatch):
    from bench.model.records import StepRecord
    from bench.model.results import RunWriter
    from bench.report import build_report

    sink, _ = fake_run(tmp_path, monkeypatch, lambda inst: BoundaryView({"container": 8403}))
    run_id = "t-20261205-000000-b0b0"
    writer = RunWriter(tmp_path / "results" / run_id, run_id)
    writer.start({"scenario": {"name": "t", "platforms": [{"name": "f"}]}})
    writer.add_samples([Sample.model_validate(s) for s in sink.samples])
    writer.add_step(StepRecord.model_validate(sink.steps[0]))
    writer.finish("complete")
    out = tmp_path / "report"
    build_report([writer.dir], out)
    summary = (out / "summary.md").read_text()
    assert "## Isolation boundary, as read: " + run_id in summary
    assert "ipc mnt net pid uts" in summary
    classic = (out / "containers-vs-vms.md").read_text()
    (row,) = [line for line in classic.splitlines() if line.startswith("| isolation")]
    assert "seccomp filter, 1 filter: 3 host system calls allowed, 14 capabilities" in row
    assert "strong at process level vs strong at the level of a whole OS" in row
    lines = classic.splitlines()
    assert lines.index(row) < [i for i, x in enumerate(lines) if x.startswith("| density")][0]
    assert "Isolation boundary, as read" in (out / "report.html").read_text()


def test_the_isolation_row_says_a_process_not_read_once():
    import pandas as pd

    from bench.report.tables import _isolation_cell

    why = "not read (the NativeBackend does not say which host processes run its instances)"
    native = pd.Series(
        {
            "system calls answered by": "host kernel 6.1",
            "host process": why,
            "user": why,
            "seccomp": why,
            "capabilities": why,
            "namespaces not shared with the host": why,
        }
    )
    assert _isolation_cell(native) == f"host kernel 6.1; host process {why}"
    runc = native.copy()
    runc.update(
        {
            "host process": "container: sh",
            "user": "root",
            "seccomp": "filter, 1 filter",
            "capabilities": "14 (00000000a80425fb)",
            "namespaces not shared with the host": "ipc mnt net pid uts",
        }
    )
    assert _isolation_cell(runc) == (
        "host kernel 6.1; container: sh, user root: seccomp filter, 1 filter, 14 capabilities, "
        "namespaces of its own: ipc mnt net pid uts"
    )

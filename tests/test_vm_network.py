"""VM networking (network: user): the guest kernel's modules packed into the bench
image, the init's network set-up (run under sh with insmod and ip stood in), the
kernel command line, the settings' rules, QEMU's argv, libvirt's XML, the forwards."""

from __future__ import annotations

import base64
import lzma
import os
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.backends.base import Instance
from bench.backends.guest import (
    FORWARDS_KEY,
    forwarded_endpoint,
    forwards,
    net_cmdline,
    resolve_boot,
)
from bench.backends.libvirt_backend import (
    QEMU_NS,
    LibvirtSettings,
    domain_xml,
    user_nic_form,
)
from bench.backends.qemu_backend import InstancePaths, QemuSettings, qemu_argv
from bench.machines import images, rootfs
from bench.machines.console import Console
from bench.model.addresses import USER_NET, Forward, GuestNet
from bench.model.errors import ImageError, MissingImage

RELEASE = "6.1.0-99-amd64"


def fake_module(info: dict[str, str]) -> bytes:
    """A minimal ELF64 file whose one named section, .modinfo, holds `info`."""
    modinfo = b"".join(f"{k}={v}".encode() + b"\0" for k, v in info.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    header_size, shentsize = 64, 64
    modinfo_off = header_size
    shstr_off = modinfo_off + len(modinfo)
    shoff = shstr_off + len(shstrtab)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, header_size, 0, 0, shentsize, 3, 2
    )

    def section(name: int, offset: int, size: int) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, offset, size, 0, 0, 1, 0)

    sections = (
        b"\0" * shentsize
        + section(1, modinfo_off, len(modinfo))
        + section(10, shstr_off, len(shstrtab))
    )
    return header + modinfo + shstrtab + sections


def module_tree(root: Path, mods: dict[str, str], builtin: tuple[str, ...] = ()) -> Path:
    """lib/modules/RELEASE with one fake module per name (value: its depends=)."""
    d = root / "modules" / RELEASE
    for name, depends in mods.items():
        where = d / "kernel" / "drivers" / f"{name}.ko"
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_bytes(fake_module({"depends": depends, "vermagic": f"{RELEASE} SMP"}))
    (d / "modules.builtin").write_text("".join(f"kernel/x/{b}.ko\n" for b in builtin))
    return d


DEBIAN = {
    "virtio_ring": "",
    "virtio": "virtio_ring",
    "virtio_mmio": "virtio,virtio_ring",
    "virtio_pci_modern_dev": "",
    "virtio_pci_legacy_dev": "",
    "virtio_pci": "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio",
    "failover": "",
    "net_failover": "failover",
    "virtio_net": "virtio_ring,virtio,net_failover",
    "virtio_balloon": "virtio,virtio_ring",  # not asked for: never packed
}


def test_modinfo_reads_the_section_like_modinfo_does():
    data = fake_module({"depends": "a,b", "vermagic": "6.1 SMP", "license": "GPL"})
    assert rootfs.modinfo(data) == {"depends": "a,b", "vermagic": "6.1 SMP", "license": "GPL"}
    with pytest.raises(ImageError, match="ELF64"):
        rootfs.modinfo(b"not a module")


def test_closure_is_the_roots_and_their_dependencies_deps_first(tmp_path):
    mods = rootfs.module_closure(module_tree(tmp_path, DEBIAN))
    names = [m.name for m in mods]
    assert set(names) == set(DEBIAN) - {"virtio_balloon"}
    for m in mods:  # every dependency is loaded before the module that needs it
        for dep in filter(None, DEBIAN[m.name].split(",")):
            assert names.index(dep) < names.index(m.name)
    assert mods[-1].name == "virtio_net"
    assert mods[0].path == f"usr/lib/modules/{RELEASE}/virtio_ring.ko"


def test_built_in_modules_are_left_out(tmp_path):
    # A kernel with the virtio bus built in (a cloud kernel) needs only the rest.
    d = module_tree(tmp_path, DEBIAN, builtin=("virtio", "virtio_ring", "virtio_mmio"))
    names = [m.name for m in rootfs.module_closure(d)]
    assert "virtio" not in names and "virtio_mmio" not in names and "virtio_net" in names


def test_a_missing_or_foreign_module_is_an_error(tmp_path):
    d = module_tree(tmp_path, {k: v for k, v in DEBIAN.items() if k != "failover"})
    with pytest.raises(ImageError, match="module failover is not in"):
        rootfs.module_closure(d)
    other = module_tree(tmp_path / "o", DEBIAN)
    (other / "kernel" / "drivers" / "virtio.ko").write_bytes(
        fake_module({"depends": "virtio_ring", "vermagic": "5.10.0-1-amd64 SMP"})
    )
    with pytest.raises(ImageError, match="for kernel 5.10.0-1-amd64, not"):
        rootfs.module_closure(other)


def test_xz_modules_are_packed_decompressed(tmp_path):
    d = module_tree(tmp_path, DEBIAN)
    plain = d / "kernel" / "drivers" / "failover.ko"
    data = plain.read_bytes()
    plain.with_name("failover.ko.xz").write_bytes(lzma.compress(data))
    plain.unlink()
    (failover,) = [m for m in rootfs.module_closure(d) if m.name == "failover"]
    assert failover.data == data and failover.source.endswith("failover.ko.xz")


def test_entries_list_the_load_order_and_skip_folders_the_tree_has(tmp_path):
    mods = rootfs.module_closure(module_tree(tmp_path, DEBIAN))
    entries = rootfs.module_entries(mods, {"usr", "usr/lib"})
    paths = [e.path for e in entries]
    assert "usr/lib" not in paths and f"usr/lib/modules/{RELEASE}" in paths
    listing = next(e for e in entries if e.path == rootfs.MODULES_LIST)
    assert listing.data.decode().split() == [f"/{m.path}" for m in mods]
    assert rootfs.module_entries([], set()) == []


def test_modules_are_found_beside_a_fetched_kernel(tmp_path):
    module_tree(tmp_path, DEBIAN)
    kernel = tmp_path / f"vmlinuz-{RELEASE}"
    assert rootfs.modules_dir(kernel, RELEASE) == tmp_path / "modules" / RELEASE
    assert rootfs.modules_dir(kernel, "0.0.0-none") is None


# -- the init's network set-up, run under sh with its tools stood in -----------------


def run_net_block(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """NET_BLOCK under sh with insmod, ip and base64 recorded (busybox's base64 -d is
    GNU's here); returns the calls in order."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for tool in ("insmod", "ip"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        (bin_dir / tool).chmod(0o755)
    modules = tmp_path / "bench-modules"
    modules.write_text("/usr/lib/modules/r/virtio_ring.ko\n/usr/lib/modules/r/virtio_net.ko\n")
    script = rootfs.NET_BLOCK.replace("/etc/bench-modules", str(modules)).replace(
        "/tmp/bench-service", str(tmp_path / "service")
    )
    script += "wait\nsleep 0.2\n"  # the service runs in the background
    path = f"{bin_dir}:{os.environ['PATH']}"
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": path, "CALLS": str(log), **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_init_configures_eth0_from_bench_net_only(tmp_path):
    service = base64.b64encode(b'echo "served $((6 * 7))" >> "$CALLS"').decode()
    calls = run_net_block(
        tmp_path, {"bench_net": "10.0.2.15/24,10.0.2.2", "bench_service": service}
    )
    assert calls == [
        "insmod /usr/lib/modules/r/virtio_ring.ko",
        "insmod /usr/lib/modules/r/virtio_net.ko",
        "ip link set lo up",
        "ip addr add 10.0.2.15/24 dev eth0",
        "ip link set eth0 up",
        "ip route add default via 10.0.2.2",
        "served 42",
    ]


def test_init_without_bench_net_touches_no_network(tmp_path):
    # A container, or a VM with network: none.
    assert run_net_block(tmp_path, {}) == []


def test_both_inits_carry_the_block_after_the_marker():
    for script in (rootfs.INIT_SCRIPT, rootfs.WORKLOAD_INIT_SCRIPT):
        assert rootfs.NET_BLOCK in script
        assert script.index("BENCH_READY") < script.index(rootfs.NET_BLOCK)
    # The workloads init reads commands on stdin: the service must not eat them.
    assert "< /dev/null &" in rootfs.NET_BLOCK


# -- settings, command line, forwards ------------------------------------------------


def qemu(**kw: object) -> QemuSettings:
    return QemuSettings(name="vm", backend="qemu", **kw)


HTTP = {"http": {"port": 80, "path": "/index.html"}}


def test_http_readiness_needs_network_user_and_tcp_is_refused():
    with pytest.raises(ValidationError, match="set network: user"):
        qemu(ready=HTTP)
    assert qemu(ready=HTTP, network="user").forwarded_ports() == [80]
    # Direct QEMU asks slirp whether the guest took the connection; libvirt cannot.
    assert qemu(ready={"tcp": 80}, network="user").forwarded_ports() == [80]
    with pytest.raises(ValidationError, match="accepts on this host's side before the guest"):
        LibvirtSettings(name="vm", backend="libvirt", network="user", ready={"tcp": 80})
    with pytest.raises(ValidationError, match="set network: user"):
        qemu(ready={"tcp": 80})
    with pytest.raises(ValidationError, match="not a process's exit status"):
        qemu(ready={"exit": 0})
    with pytest.raises(ValidationError):
        qemu(network="bridge")
    assert qemu().network == "none" and not qemu().user_net
    assert qemu(network="user").forwarded_ports() == []  # the marker: nothing to forward


def test_service_needs_the_bench_image_and_a_network():
    with pytest.raises(ValidationError, match="service needs a network"):
        qemu(service="httpd -p 80")
    with pytest.raises(ValidationError, match="not with kernel: or disk:"):
        qemu(service="httpd", network="user", kernel="/k")
    with pytest.raises(ValidationError):
        qemu(service="x" * 513, network="user")


def test_libvirt_network_user_and_a_named_network():
    lv = LibvirtSettings(name="vm", backend="libvirt", network="user", ready=HTTP)
    assert lv.user_net and lv.forwarded_ports() == [80]
    named = LibvirtSettings(name="vm", backend="libvirt", network="default")
    assert not named.user_net
    with pytest.raises(ValidationError, match="set network: user"):
        LibvirtSettings(name="vm", backend="libvirt", network="default", ready=HTTP)


def test_kernel_command_line_asks_the_init_for_the_network_and_service():
    s = qemu(network="user", service="httpd -p 80 -h /www", ready=HTTP)
    words = net_cmdline("console=ttyS0 panic=-1", s).split()
    assert words[:2] == ["console=ttyS0", "panic=-1"]
    assert "bench_net=10.0.2.15/24,10.0.2.2" in words
    (service,) = [w for w in words if w.startswith("bench_service=")]
    assert base64.b64decode(service.split("=", 1)[1]) == b"httpd -p 80 -h /www"
    assert net_cmdline("console=ttyS0", qemu()) == "console=ttyS0"
    # The user's own bench_net= wins.
    own = net_cmdline("bench_net=192.168.7.2/24,192.168.7.1", qemu(network="user"))
    assert own == "bench_net=192.168.7.2/24,192.168.7.1"


def test_forwards_and_the_endpoint_the_probe_uses():
    s = qemu(network="user", ready=HTTP)
    (f,) = forwards(s, lambda: 40123)
    assert f == Forward(40123, 80) and f.hostfwd == "tcp:127.0.0.1:40123-:80"
    inst = Instance("i", "r", "p", Console("X"))
    inst.info[FORWARDS_KEY] = {"80": 40123}
    assert forwarded_endpoint(inst, 80) == ("127.0.0.1", 40123)
    with pytest.raises(ValueError, match="guest port 8080 is not forwarded"):
        forwarded_endpoint(inst, 8080)


def test_addresses_are_checked():
    assert USER_NET.kernel_word == "bench_net=10.0.2.15/24,10.0.2.2"
    with pytest.raises(ValueError, match="not on 10.0.2.0/24"):
        GuestNet("10.0.2.15", 24, "10.0.3.2")
    for bad in ((0, 80), (80, 65536), (True, 80)):
        with pytest.raises(ValueError, match="is not a number from 1 to 65535"):
            Forward(*bad)  # type: ignore[arg-type]


# -- the engines' forms --------------------------------------------------------------


def argv(machine: str, nic: list[Forward] | None) -> list[str]:
    return qemu_argv(
        binary="qemu-system-x86_64",
        name="bench-r-p-0",
        machine=machine,
        accel="tcg",
        memory_bytes=2**28,
        vcpus=1,
        paths=InstancePaths.of("bench-r-p-0", Path("/var/lib/bench/qemu")),
        nic=nic,
    )


def test_qemu_nic_on_microvm_and_pc():
    fwd = [Forward(40123, 80)]
    micro = argv("microvm", fwd)
    i = micro.index("-netdev")
    assert micro[i + 1] == "user,id=net0,hostfwd=tcp:127.0.0.1:40123-:80"
    assert micro[i + 2 : i + 4] == ["-device", "virtio-net-device,netdev=net0"]
    pc = argv("pc", fwd)
    assert pc[pc.index("-device", pc.index("-netdev")) + 1] == "virtio-net-pci,netdev=net0,romfile="
    assert "-netdev" not in argv("microvm", None)


def test_libvirt_nic_as_passt_and_as_qemu_slirp():
    kernel = (Path("/k"), Path("/i"), "console=ttyS0")
    fwd = [Forward(40123, 80)]
    passt = ET.fromstring(
        domain_xml("n", "r", "p", "tcg", 2**28, 1, kernel=kernel, nic=fwd, nic_form="passt")
    )
    iface = passt.find("devices/interface")
    assert iface.get("type") == "user" and iface.find("backend").get("type") == "passt"
    assert iface.find("ip").attrib == {"family": "ipv4", "address": "10.0.2.15", "prefix": "24"}
    pf = iface.find("portForward")
    assert pf.attrib == {"proto": "tcp", "address": "127.0.0.1"}
    assert pf.find("range").attrib == {"start": "40123", "to": "80"}
    slirp = ET.fromstring(
        domain_xml("n", "r", "p", "tcg", 2**28, 1, kernel=kernel, nic=fwd, nic_form="slirp")
    )
    assert slirp.find("devices/interface") is None
    args = [a.get("value") for a in slirp.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")]
    assert args[:2] == ["-netdev", "user,id=benchnet0,hostfwd=tcp:127.0.0.1:40123-:80"]
    assert args[2] == "-device" and args[3].startswith("virtio-net-pci,netdev=benchnet0,")
    none = ET.fromstring(domain_xml("n", "r", "p", "tcg", 2**28, 1, network="none"))
    assert none.find("devices/interface") is None


def test_passt_only_where_the_domain_capabilities_list_it():
    newer = (
        "<domainCapabilities><devices><interface supported='yes'>"
        "<enum name='backendType'><value>default</value><value>passt</value></enum>"
        "</interface></devices></domainCapabilities>"
    )
    assert user_nic_form(newer) == "passt"
    # libvirt 9.0 (Debian 12) lists no interface backends, and refuses passt.
    assert user_nic_form("<domainCapabilities><devices/></domainCapabilities>") == "slirp"


# -- the image: rebuilt when its inputs change ----------------------------------------


def manifest(**over: object) -> images.Manifest:
    m = {
        "name": "busybox",
        "kernel_source": "/nowhere/vmlinuz",
        "kernel_release": RELEASE,
        "init_sha256": images.init_sha256("busybox"),
        "pvh_kernel": True,
        "net_modules": {"virtio_net": "x"},
    }
    return {**m, **over}  # type: ignore[return-value]


def test_stale_when_the_init_or_the_modules_differ(tmp_path):
    assert images.stale_reason(manifest()) is None
    assert images.stale_reason(manifest(init_sha256="0" * 64)) == "an older bench built it"
    no_pvh = manifest()
    del no_pvh["pvh_kernel"]
    assert images.stale_reason(no_pvh) == "an older bench built it"
    # No modules packed: stale only once they can be found.
    assert images.stale_reason(manifest(net_modules={})) is None
    module_tree(tmp_path, DEBIAN)
    kernel = tmp_path / f"vmlinuz-{RELEASE}"
    found = manifest(net_modules={}, kernel_source=str(kernel))
    assert images.stale_reason(found) == "the guest kernel's network modules were not packed"
    assert images.init_sha256("workloads") != images.init_sha256("busybox")


def test_network_user_without_modules_says_how_to_get_them(tmp_path, monkeypatch):
    class Host:  # refused before anything is copied or measured
        allocated_bytes = staticmethod(lambda path: 0)

    monkeypatch.setattr(
        images,
        "vm_artifacts",
        lambda name: images.VmArtifacts(
            tmp_path / "k", tmp_path / "i", "console=ttyS0", manifest(net_modules={})
        ),
    )
    with pytest.raises(MissingImage, match="virtio_net module") as e:
        resolve_boot(qemu(network="user"), Host(), False, print)  # type: ignore[arg-type]
    assert e.value.key == "network" and "setup-host.sh" in str(e.value)


# -- network workloads in a VM: the guest dials this host's loopback as 10.0.2.2 ------


def test_a_vm_on_user_networking_may_run_the_tcp_workload():
    from bench.plan.scenario import ScenarioError, parse_scenario

    head = "name: t\nworkloads: {run: [tcp]}\nplatforms:\n"
    vm = "  - {name: vm, backend: qemu, image: workloads, network: user}\n"
    assert parse_scenario(head + vm).platforms[0].user_net
    with pytest.raises(ScenarioError, match="set network: user on platform vm"):
        parse_scenario(head + vm.replace(", network: user", ""))


def test_the_guest_dials_its_gateway_for_a_server_on_this_hosts_loopback():
    from bench.backends.qemu_backend import QemuBackend

    inst = Instance("i", "r", "p", Console("X"))
    b = QemuBackend(qemu(network="user"))
    assert b.host_address(inst) == "127.0.0.1"
    assert b.host_address_seen(inst, "127.0.0.1") == "10.0.2.2"
    with pytest.raises(ValueError, match="set network: user"):
        QemuBackend(qemu()).host_address(inst)


def test_doctor_says_whether_network_user_can_work(tmp_path, monkeypatch):
    from bench.backends.guest import guest_network_check

    kernel = tmp_path / f"vmlinuz-{RELEASE}"
    monkeypatch.setattr(images, "find_kernel", lambda: kernel)
    monkeypatch.setattr(images, "kernel_release", lambda path: RELEASE)
    missing = guest_network_check()
    assert missing.ok and missing.warn and "setup-host.sh" in missing.fix
    assert f"no modules of {RELEASE}" in missing.detail
    module_tree(tmp_path, DEBIAN)
    found = guest_network_check()
    assert found.ok and not found.warn and found.detail.startswith("network: user: 9 modules")


# -- ready: tcp through a forward: the guest's side, as slirp's table says ------------

USERNET = """Hub -1 (net0):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[SYN_SENT]      13       127.0.0.1 18082       10.0.2.15    80     0     0
  TCP[HOST_FORWARD]   8       127.0.0.1 18082       10.0.2.15    80     0     0
"""


def test_slirps_table_says_whether_the_guest_took_the_connection():
    from bench.backends.qemu_backend import guest_established

    # As QEMU 7.2 printed it for a connection to a paused guest: not taken yet.
    assert not guest_established(USERNET, 80)
    taken = USERNET.replace("TCP[SYN_SENT]", "TCP[ESTABLISHED]")
    assert guest_established(taken, 80) and not guest_established(taken, 8080)
    assert not guest_established("", 80)


@pytest.fixture
def server():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s
    s.close()


def test_a_forwarded_connection_is_ready_only_when_the_guest_took_it(server):
    import threading

    from bench.machines import netprobe

    port = server.getsockname()[1]
    asked = []

    def accepted() -> bool:
        asked.append(1)
        return len(asked) >= 3  # the guest takes it on the third look

    ok = netprobe.tcp_forwarded("127.0.0.1", port, 2.0, accepted, 80)
    assert ok == netprobe.Answer(True, "port 80 accepted a connection") and len(asked) == 3
    # Held open by the forwarder, never taken by the guest: no answer within the timeout.
    quiet = netprobe.tcp_forwarded("127.0.0.1", port, 0.1, lambda: False, 80)
    assert quiet == netprobe.Answer(False, "port 80 did not answer within 0.1s", timed_out=True)

    # The forwarder closes it (the guest refused): refused, at once.
    import socket

    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        refusing.listen()

        def close_next() -> None:
            conn, _ = refusing.accept()
            conn.close()

        closer = threading.Thread(target=close_next)
        closer.start()
        refused = netprobe.tcp_forwarded(
            "127.0.0.1", refusing.getsockname()[1], 2.0, lambda: False, 80
        )
        closer.join()
    assert refused == netprobe.Answer(False, "port 80 refused")

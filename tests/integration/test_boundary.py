"""The boundary measurement on the real engines: each platform's facts as read from its
running instances, and they differ the way the platforms do.

runc: the container's own init, run by the host kernel, in a seccomp filter, with
docker's default capabilities and its own pid/mnt/net/uts/ipc namespaces. runsc: the
host process docker reports is gVisor's runsc-sandbox (the Sentry), under its own
seccomp filter with no_new_privs, and the instance reports gVisor's kernel release, not
the host's. A VM: the guest's kernel answers; the host process is QEMU; direct QEMU (no
-sandbox, no namespaces) shares every namespace with the host, libvirt's QEMU runs under
libvirt's seccomp sandbox (qemu.conf seccomp_sandbox, on by default). Each run removes
what it started (run_real's finally).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.measurements.boundary import Boundary, boundary_table
from tests.integration.bench_runs import run_real
from tests.integration.test_runtimes import require_runtime

CONTAINER_NS = {"pid", "mnt", "net", "uts", "ipc"}


def run(platforms: str) -> list[dict]:
    sink, _, left = run_real(
        "name: boundary\ntimeout: 120s\nsettle: 0s\nwarmup: 0\ncounts: [1]\n"
        "platforms:\n" + platforms
    )
    assert left == []
    assert sink.samples and all(s["ok"] for s in sink.samples), [s["error"] for s in sink.samples]
    return sink.samples


def facts(sample: dict) -> Boundary:
    return Boundary.model_validate(sample["extras"]["boundary"])


@pytest.mark.docker
def test_runc_and_runsc_differ_as_a_container_and_a_sandbox(docker_api):
    require_runtime(docker_api, "runsc")
    samples = run(
        "  - {name: runc, backend: docker, image: busybox, runtime: runc}\n"
        "  - {name: runsc, backend: docker, image: busybox, runtime: runsc}\n"
    )
    by = {s["platform"]: facts(s) for s in samples}
    runc, runsc = by["runc"], by["runsc"]

    c = runc.processes["container"]
    assert runc.syscalls_by == f"host kernel {runc.host_kernel}"
    assert runc.instance_kernel == runc.host_kernel
    assert c.seccomp == "filter" and (c.seccomp_filters or 0) >= 1
    assert c.namespaces_not_shared is not None and set(c.namespaces_not_shared) >= CONTAINER_NS
    # docker's default set: far from all, and not CAP_SYS_ADMIN.
    assert c.capabilities is not None and "sys_admin" not in c.capabilities
    assert 0 < len(c.capabilities) < 20

    s = runsc.processes["sandbox"]
    assert "container" not in runsc.processes  # no host process of its own under runc's rules
    assert s.command == "runsc-sandbox"
    assert runsc.instance_kernel and runsc.instance_kernel != runsc.host_kernel
    assert runsc.syscalls_by == f"gVisor's Sentry (runsc-sandbox), reports {runsc.instance_kernel}"
    assert s.seccomp == "filter" and (s.seccomp_filters or 0) >= 1 and s.no_new_privs is True
    assert s.namespaces_not_shared is not None
    assert {"mnt", "net", "uts", "ipc"} <= set(s.namespaces_not_shared)
    assert s.pid != c.pid
    # The instance's code runs in a child of the Sentry (gVisor's ptrace or systrap stub),
    # itself under a seccomp filter.
    w = runsc.processes["workload"]
    assert w.pid != s.pid and w.seccomp == "filter"
    # The host system calls each may make, read from its filters: Docker's default profile
    # lets a container make most of them; gVisor's Sentry a few dozen (69 here, 292 for
    # runc's container, 2026-12-06).
    assert c.seccomp_syscalls_allowed is not None and s.seccomp_syscalls_allowed is not None
    assert c.seccomp_syscalls_allowed > 200
    assert 20 < s.seccomp_syscalls_allowed < c.seccomp_syscalls_allowed / 2

    rows = {r["platform"]: r for r in boundary_table(samples, ["runc", "runsc"])}
    assert list(rows) == ["runc", "runsc"]
    assert rows["runsc"]["system calls answered by"].startswith("gVisor's Sentry")
    assert rows["runc"]["seccomp"].startswith("filter")
    assert "not read" not in rows["runc"]["namespaces not shared with the host"]


@pytest.mark.podman
def test_podman_container_boundary(podman_client):
    (sample,) = run("  - {name: p, backend: podman, image: busybox, memory: 64MiB}\n")
    b = facts(sample)
    c = b.processes["container"]
    assert b.syscalls_by == f"host kernel {b.host_kernel}"
    assert c.seccomp == "filter" and (c.seccomp_filters or 0) >= 1
    assert c.namespaces_not_shared is not None and set(c.namespaces_not_shared) >= CONTAINER_NS


@pytest.mark.qemu
def test_direct_qemu_vm_boundary(qemu_binary):
    (sample,) = run(
        "  - {name: vm, backend: qemu, machine: microvm, image: busybox, accel: tcg,"
        " memory: 192MiB}\n"
    )
    b = facts(sample)
    vmm = b.processes["vmm"]
    assert vmm.command == "qemu-system-x86_64"
    assert b.instance_kernel and b.instance_kernel != b.host_kernel
    assert b.syscalls_by == f"guest kernel {b.instance_kernel}"
    # bench starts QEMU without -sandbox and in no namespace of its own.
    assert vmm.seccomp == "disabled"
    assert vmm.namespaces_not_shared == []
    assert vmm.uid == 0  # bench's own user (root here): nothing drops it
    assert b.devices is not None and b.devices_source and "QMP" in b.devices_source
    assert b.devices.get("virtio-mmio", 0) >= 1 and b.devices.get("isa-serial") == 1
    assert not any("pci" in d for d in b.devices)  # microvm: no PCI bus


def libvirt_seccomp_expected() -> str:
    """What libvirt's qemu.conf says of QEMU's seccomp sandbox (on unless set to 0)."""
    try:
        text = Path("/etc/libvirt/qemu.conf").read_text()
    except OSError:
        return "filter"
    off = re.search(r"^\s*seccomp_sandbox\s*=\s*0\s*$", text, re.MULTILINE)
    return "disabled" if off else "filter"


@pytest.mark.libvirt
def test_libvirt_vm_boundary(libvirt_conn):
    (sample,) = run("  - {name: v, backend: libvirt, image: busybox, accel: tcg, memory: 192MiB}\n")
    b = facts(sample)
    vmm = b.processes["vmm"]
    assert vmm.command and vmm.command.startswith("qemu-system")
    assert b.syscalls_by == f"guest kernel {b.instance_kernel}" != f"guest kernel {b.host_kernel}"
    assert vmm.seccomp == libvirt_seccomp_expected()
    assert b.devices_source and "domain XML" in b.devices_source
    assert b.devices is not None and b.devices.get("serial pty") == 1
    assert "emulator" not in b.devices

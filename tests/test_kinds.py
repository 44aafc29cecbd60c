"""The spectrum's kinds: their order and meaning (bench.model.kinds), the kind each backend
gives its instances, and what the runner, the anomaly notes and the memory notes do
with a sandbox or a microVM (no engine needed)."""

from __future__ import annotations

import pytest

from bench.judge.anomalies import guest_uptime
from bench.judge.summary import memory_disagreements
from bench.model import kinds
from tests.helpers import FakeHost, run_fake


def test_kinds_sort_from_container_to_vm_and_unknown_ones_last():
    scrambled = ["vm", None, "microvm", "a-kind-from-a-newer-bench", "sandbox", "container"]
    assert sorted(scrambled, key=kinds.order)[:4] == ["container", "sandbox", "microvm", "vm"]
    assert kinds.order(None) == kinds.order("a-kind-from-a-newer-bench") == len(kinds.KINDS)


@pytest.mark.parametrize(
    ("kind", "own_kernel", "is_vm", "label"),
    [
        ("container", False, False, "container"),
        ("sandbox", True, False, "sandboxed container"),
        ("microvm", True, True, "microVM"),
        ("vm", True, True, "VM"),
        (None, False, False, "-"),
    ],
)
def test_what_each_kind_means(kind, own_kernel, is_vm, label):
    assert kinds.own_kernel(kind) is own_kernel
    assert kinds.is_vm(kind) is is_vm
    assert kinds.label(kind) == label


def test_runtimes_kind_and_project():
    assert kinds.for_runtime("runsc") == kinds.for_runtime("runsc-kvm") == "sandbox"
    assert kinds.for_runtime("runc") == kinds.for_runtime("crun") == "container"
    assert kinds.for_runtime(None) == "container"
    assert kinds.runtime_project("runsc") == kinds.runtime_project("runsc-kvm") == "gVisor"
    assert kinds.runtime_project("runc") is None and kinds.runtime_project(None) is None


# -- the backends ----------------------------------------------------------------------


class DaemonApi:
    """The docker APIClient calls prepare() makes, for a daemon whose default runtime
    is `default`."""

    def __init__(self, default):
        self.default = default

    def info(self):
        return {
            "DefaultRuntime": self.default,
            "Runtimes": {"runc": {"path": "runc"}, "runsc": {"path": "/usr/bin/runsc"}},
            "Driver": "overlay2",
            "DockerRootDir": "/var/lib/docker",
        }

    def inspect_image(self, ref):
        return {"Id": "sha256:" + "0" * 64, "Size": 1, "Config": {"Labels": {}}}

    def version(self):
        return {"Version": "20.10.24", "Components": []}


@pytest.mark.parametrize(
    ("runtime", "default", "kind"),
    [
        ("runsc", "runc", "sandbox"),
        ("runc", "runsc", "container"),
        (None, "runc", "container"),
        (None, "runsc", "sandbox"),  # no `runtime:`: the daemon's default decides
    ],
)
def test_a_docker_platform_is_a_sandbox_when_its_runtime_is_gvisor(runtime, default, kind):
    from bench.backends.docker_backend import DockerBackend, DockerSettings

    settings = DockerSettings(name="c", backend="docker", image="alpine:3", runtime=runtime)
    b = DockerBackend(settings, host=FakeHost(lambda: []))
    assert b.kind == kinds.for_runtime(runtime)  # before any engine is asked
    b._api = DaemonApi(default)
    b._runtime_checked = True  # the probe passed
    engine = b.prepare(build_missing=False)
    assert engine["runtime"] == (runtime or default)
    assert b.kind == kind
    assert DockerBackend.kind == "container"  # per instance: the class is untouched


@pytest.mark.parametrize(("machine", "kind"), [("microvm", "microvm"), ("q35", "vm"), ("pc", "vm")])
def test_a_qemu_platform_is_a_microvm_on_the_microvm_machine(machine, kind):
    from bench.backends.qemu_backend import QemuBackend, QemuSettings

    assert QemuBackend(QemuSettings(name="q", backend="qemu", machine=machine)).kind == kind


def test_a_libvirt_platform_is_a_vm():
    from bench.backends.libvirt_backend import LibvirtBackend, LibvirtSettings

    assert LibvirtBackend(LibvirtSettings(name="v", backend="libvirt")).kind == "vm"


# -- what the kinds change -------------------------------------------------------------


def scenario(kind: str) -> str:
    return (
        "name: t\ntimeout: 120s\nsettle: 0s\ncounts: [1]\nplatforms:\n"
        f"  - {{name: p, backend: fake, kind: {kind}, boot: 1s, uptime: 0.7s}}\n"
    )


@pytest.mark.parametrize(
    ("kind", "uptime"), [("container", None), ("sandbox", 0.7), ("microvm", 0.7), ("vm", 0.7)]
)
def test_only_an_instance_with_its_own_kernel_records_its_uptime(kind, uptime):
    _, sink, _ = run_fake(scenario(kind))
    (s,) = sink.samples
    assert s["kind"] == kind and s["ok"]
    assert s["guest_uptime_s"] == uptime
    assert s["marker_fields"]["uptime"]  # the raw value is always kept


@pytest.mark.parametrize(
    ("kind", "expected"), [("container", None), ("sandbox", 2.0), ("microvm", 2.0), ("vm", 2.0)]
)
def test_the_anomaly_notes_use_the_uptime_of_every_own_kernel(kind, expected):
    # Runs stored before the recorder dropped it: a container's uptime is the host's.
    assert guest_uptime({"kind": kind, "guest_uptime_s": 2.0}) == expected


def memory_row(platform, backend, kind):
    return {
        "platform": platform,
        "backend": backend,
        "kind": kind,
        "n": 4,
        "mem_host_per_instance_bytes": 300 * 2**20,
        "mem_pss_per_instance_bytes": 100 * 2**20,
    }


def test_the_memory_note_explains_a_sandbox_as_a_container_and_a_microvm_as_a_vm():
    lines = memory_disagreements(
        [
            memory_row("runsc", "docker", "sandbox"),
            memory_row("microvm", "qemu", "microvm"),
            memory_row("vm", "libvirt", "vm"),
        ]
    )
    by_platform = {line.split(":")[0]: line for line in lines}
    assert "cgroup and overlay bookkeeping" in by_platform["runsc"]
    assert "KVM/TCG structures)" in by_platform["microvm"]
    assert "libvirt" not in by_platform["microvm"]  # QEMU is bench's child: in its PSS
    assert "KVM/TCG structures) and libvirt's own growth" in by_platform["vm"]


def test_the_terminal_summary_lists_platforms_from_container_to_vm():
    from bench.report.views import spectrum_order

    ran = [("vm", "vm", 1), ("runc", "container", 1), ("vm", "vm", 4), ("gv", "sandbox", 1)]
    ran += [("runc", "container", 4), ("crun", "container", 1), ("m", "microvm", 1)]
    rows = [{"platform": p, "kind": k, "n": n} for p, k, n in ran]
    got = [(r["platform"], r["n"]) for r in spectrum_order(rows)]
    assert got == [
        ("runc", 1),
        ("runc", 4),
        ("crun", 1),
        ("gv", 1),
        ("m", 1),
        ("vm", 1),
        ("vm", 4),
    ]

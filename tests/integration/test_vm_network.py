"""VMs on user-mode networking (network: user) on the real engines, under TCG: the
bench image's guest loads its virtio-net modules, sets eth0 and runs busybox httpd
(`service:`); bench is ready when an HTTP GET through the port forwarded from this
host's loopback answers 200, which only the guest can give.

The image is built into a cache folder of the module's own (from the host's guest
kernel and its network modules, scripts/setup-host.sh puts them beside a fetched
kernel), so the shared cache's image is never rebuilt under another run; the folder,
every VM (run_real removes its run's leftovers in a `finally`) and every forward go
afterwards, even when a test fails."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from pathlib import Path

import pytest

from bench.machines import images, rootfs
from bench.model.records import WorkloadRun
from tests.integration.bench_runs import run_real

SERVICE = "mkdir -p /www && echo ok > /www/index.html && httpd -p 80 -h /www"


@pytest.fixture(scope="module")
def vm_cache():
    """BENCH_CACHE_DIR of this module, world-readable (libvirt's QEMU runs as its own
    user and reads the kernel and initramfs there); BENCH_KERNEL the host's kernel."""
    kernel = images.find_kernel()
    release = images.kernel_release(kernel)
    if rootfs.modules_dir(kernel, release) is None:
        pytest.fail(
            f"no modules of the guest kernel {release} beside {kernel} or in /lib/modules: "
            "run scripts/setup-host.sh (it extracts the network ones beside the kernel)"
        )
    saved = {k: os.environ.get(k) for k in ("BENCH_CACHE_DIR", "BENCH_KERNEL")}
    cache = Path("/tmp") / f"bench-it-vmnet-{secrets.token_hex(4)}"
    images.make_readable_dirs(cache)
    os.environ["BENCH_CACHE_DIR"], os.environ["BENCH_KERNEL"] = str(cache), str(kernel)
    try:
        yield cache
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(cache, ignore_errors=True)


def scenario(
    platform: str,
    path: str = "/index.html",
    timeout: str = "120s",
    ready: dict[str, str] | None = None,
) -> str:
    """One step of one guest per platform name in `ready` (name -> its ready: rule), by
    default one `vm` ready by an HTTP 200 on `path`."""
    ready = ready or {"vm": f"{{http: {{port: 80, path: {path}, status: 200}}}}"}
    return (
        f"name: vmnet\ntimeout: {timeout}\ncounts: [1]\nwarmup: 0\nsettle: 0s\nplatforms:\n"
        + "".join(
            f"  - name: {name}\n{platform}    accel: tcg\n    memory: 192MiB\n    network: user\n"
            f"    service: {SERVICE}\n    ready: {rule}\n"
            for name, rule in ready.items()
        )
    )


MICROVM = "    backend: qemu\n    machine: microvm\n"
LIBVIRT = "    backend: libvirt\n"


def closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def check_ready_by_http(platform: str) -> dict:
    sink, engines, left = run_real(scenario(platform))
    assert left == []
    (s,) = sink.samples
    assert s["ok"], s["error"]
    assert s["ready_kind"] == "http" and s["ready_probes"] >= 1
    assert s["start_s"] <= s["ready_s"] < 120
    (facts,) = engines.values()
    assert facts["network"] == "user"
    (host_port,) = s["extras"]["forwards"].values()
    assert closed(host_port)  # the forward went with its VM
    return facts


@pytest.mark.qemu
def test_microvm_ready_by_http_through_its_forward(qemu_binary, vm_cache):
    check_ready_by_http(MICROVM)
    manifest = images.load_manifest("busybox")
    assert manifest is not None and "virtio_net" in images.packed_modules(manifest)


@pytest.mark.qemu
def test_microvm_http_answer_is_the_guests(qemu_binary, vm_cache):
    # A path the guest's httpd does not have: its 404 until the timeout, never ready.
    (s,) = run_real(scenario(MICROVM, path="/missing", timeout="45s"))[0].samples
    assert not s["ok"] and s["failure"] == "timeout"
    assert s["error"] == "HTTP 404 on /missing until the 45s timeout"


@pytest.mark.libvirt
def test_libvirt_ready_by_http_through_its_forward(libvirt_conn, vm_cache):
    facts = check_ready_by_http(LIBVIRT)
    # passt where libvirt offers it; libvirt 9.0 (Debian 12) refuses it: QEMU's slirp.
    assert facts["nic_backend"] in ("passt", "slirp")


@pytest.mark.qemu
def test_microvm_tcp_workload_reaches_this_hosts_server(qemu_binary, vm_cache):
    # iperf3's client in the guest against bench's server on this host's loopback,
    # dialled as 10.0.2.2 through slirp; the figure is emulated under TCG.
    if shutil.which("iperf3") is None:
        pytest.fail("the tcp workload needs iperf3 on this host (apt-get install iperf3)")
    sink, _, left = run_real(
        "name: vmtcp\ntimeout: 240s\ncounts: [1]\nwarmup: 0\nsettle: 0s\n"
        "workloads: {duration: 2s, run: [tcp]}\nplatforms:\n"
        "  - {name: vm, backend: qemu, machine: microvm, image: workloads, accel: tcg,\n"
        "     memory: 1GiB, network: user}\n"
    )
    assert left == []
    (s,) = sink.samples
    assert s["ok"], s["error"]
    (run,) = [WorkloadRun.model_validate(r) for r in s["extras"]["workloads"]]
    assert run.error is None and run.rc == 0, run.error
    assert "10.0.2.2" in run.argv and run.emulated
    (got,) = [f for f in run.figures if f.figure == "received_bits_per_s"]
    assert got.value > 0


@pytest.mark.qemu
def test_microvm_ready_by_tcp_once_the_guest_takes_the_connection(qemu_binary, vm_cache):
    # slirp accepts on this host's side at once; bench waits for the guest's side
    # (slirp's table over QMP): httpd's port 80 becomes ready, port 81 stays refused.
    sink, _, left = run_real(
        scenario(MICROVM, timeout="60s", ready={"p80": "{tcp: 80}", "p81": "{tcp: 81}"})
    )
    assert left == []
    by = {s["platform"]: s for s in sink.samples}
    assert by["p80"]["ok"] and by["p80"]["ready_kind"] == "tcp", by["p80"]["error"]
    assert not by["p81"]["ok"] and by["p81"]["error"] == "port 81 refused until the 60s timeout"

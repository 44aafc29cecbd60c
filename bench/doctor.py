"""`bench doctor`: can this host run bench, and if not, what to do about it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from bench.errors import BenchError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    engine: bool = False  # an unreachable engine: exit 3, like bench run


def run_checks(
    docker_host: str | None = None,
    libvirt_uri: str = "qemu:///system",
    say: Callable[[str], None] = lambda _msg: None,
) -> list[Check]:
    from bench import images, rootfs
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.backends.libvirt_backend import (
        KVM_PROBE_TIMEOUT_S,
        LibvirtBackend,
        LibvirtSettings,
        version_string,
    )

    checks: list[Check] = []

    try:
        bb = rootfs.find_busybox()
        checks.append(Check("busybox", True, f"{bb} ({rootfs.busybox_version(bb)})"))
    except BenchError as e:
        checks.append(Check("busybox", False, str(e), "apt-get install busybox-static"))
    try:
        k = images.find_kernel()
        checks.append(Check("guest kernel", True, f"{k} ({images.kernel_release(k)})"))
    except BenchError as e:
        checks.append(Check("guest kernel", False, str(e), "make demo (fetches one)"))

    docker = DockerBackend(
        DockerSettings(name="doctor", backend="docker", image="busybox", host=docker_host)
    )
    try:
        docker.connect()
        v = docker.connect().version()
        checks.append(
            Check("docker", True, f"Docker Engine {v.get('Version')} at {docker.address}")
        )
        ref = images.docker_ref("busybox")
        has = docker.has_image(ref)
        checks.append(
            Check("docker image", has, ref if has else f"{ref} missing", "bench images build")
        )
    except BenchError as e:
        checks.append(Check("docker", False, str(e), "dockerd & (or: make demo)", engine=True))
    finally:
        docker.close()

    lv = LibvirtBackend(
        LibvirtSettings(name="doctor", backend="libvirt", image="busybox", uri=libvirt_uri)
    )
    try:
        conn = lv.connect()
        checks.append(
            Check(
                "libvirt",
                True,
                f"libvirt {version_string(conn.getLibVersion())}, "
                f"QEMU {version_string(conn.getVersion())} at {libvirt_uri}",
            )
        )
        art = images.vm_artifacts("busybox")
        checks.append(
            Check(
                "vm image",
                art is not None,
                f"{art.kernel.parent}" if art else "busybox kernel+initramfs not built",
                "bench images build",
            )
        )
        if art is not None:
            accel = lv.resolve_accel(
                on_probe=lambda: say(
                    "probing KVM with a test boot (once per host, then cached; up to "
                    f"{KVM_PROBE_TIMEOUT_S:.0f} s)..."
                )
            )
            detail = (
                "KVM boots guests"
                if accel == "kvm"
                else "TCG only (software emulation): KVM is absent or a probe boot under "
                "KVM did not reach the guest's init; VM boot times are not representative of KVM"
            )
            checks.append(Check("accel", True, detail))
    except BenchError as e:
        checks.append(
            Check(
                "libvirt", False, str(e), "virtlogd -d && libvirtd -d (or: make demo)", engine=True
            )
        )
    finally:
        lv.close()

    checks.append(
        Check(
            "qemu-img",
            shutil.which("qemu-img") is not None,
            shutil.which("qemu-img") or "not found (only needed for disk: VMs)",
            "apt-get install qemu-utils",
        )
    )
    return checks

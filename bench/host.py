"""What bench knows about the host it measures on.

Host-side facts and probes sit behind `Host`, given to whoever needs them, instead
of psutil being called on the local machine from everywhere: platforms on remote
hosts (docker ssh://, qemu+ssh://) will bring their own Host.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import bench


class LocalHost:
    name = "local"

    def describe(self) -> dict[str, Any]:
        import psutil

        mem = psutil.virtual_memory()
        return {
            "hostname": socket.gethostname(),
            "cpu_model": _cpu_model(),
            "cpu_cores": os.cpu_count(),
            "cpu_physical_cores": psutil.cpu_count(logical=False),
            "mem_total_bytes": mem.total,
            "mem_available_bytes": mem.available,
            "kernel": platform.release(),
            "os": _os_release(),
            "arch": platform.machine(),
            "kvm_device": os.path.exists("/dev/kvm"),
            "cgroup_version": 2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1,
            "python": sys.version.split()[0],
            "bench_version": bench.__version__,
        }

    def mem_total_bytes(self) -> int:
        import psutil

        return psutil.virtual_memory().total

    def mem_available_bytes(self) -> int:
        import psutil

        return psutil.virtual_memory().available


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()

"""Backend registry. A new engine is one module plus one line in BACKENDS.

Modules are imported only when a scenario names them, so `bench --help` stays
instant and a host without libvirt can still run docker-only scenarios.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.backends.base import Backend, CliOption
    from bench.machines.host import Host
    from bench.model.settings import PlatformBase

BACKENDS: dict[str, str] = {
    "docker": "bench.backends.docker_backend:DockerBackend",
    "podman": "bench.backends.podman_backend:PodmanBackend",
    "libvirt": "bench.backends.libvirt_backend:LibvirtBackend",
    "qemu": "bench.backends.qemu_backend:QemuBackend",
    # The baseline of workload runs: a host process in a chroot of the bench image.
    "native": "bench.backends.native_backend:NativeBackend",
    # In-process stand-in for unit tests of the runner; measures nothing real.
    "fake": "bench.backends.fake:FakeBackend",
}


def backend_class(name: str) -> type[Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def settings_model(name: str) -> type[PlatformBase]:
    return backend_class(name).Settings


def make_backend(settings: PlatformBase, host: Host | None = None) -> Backend:
    """The backend of a platform; its Host defaults to the one its engine address names."""
    return backend_class(settings.backend)(settings, host=host)


def backend_classes() -> list[type[Backend]]:
    """Every registered backend, in registry order (imports each module)."""
    return [backend_class(name) for name in BACKENDS]


def cli_options(command: str) -> list[CliOption]:
    """The options registered backends add to one CLI command ("doctor", "clean",
    "images"), checked for clashes: two backends cannot claim one flag."""
    out: dict[str, CliOption] = {}
    for cls in backend_classes():
        for opt in cls.cli_options:
            if command not in opt.commands:
                continue
            if opt.flag in out or any(o.key == opt.key for o in out.values()):
                raise ValueError(f"{cls.__name__}: {opt.flag} ({opt.key}) is already taken")
            out[opt.flag] = opt if cls.listed else dataclasses.replace(opt, hidden=True)
    return list(out.values())

"""`bench clean`: find and remove everything bench created and left behind."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.backends.base import Backend, Leftover
from bench.errors import BenchError


@dataclass
class CleanReport:
    removed: list[Leftover] = field(default_factory=list)
    failed: list[tuple[Leftover, str]] = field(default_factory=list)
    live: list[Leftover] = field(default_factory=list)  # of a run still going: untouched
    unreachable: list[str] = field(default_factory=list)


def default_backends(docker_host: str | None, libvirt_uris: list[str]) -> list[Backend]:
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.backends.libvirt_backend import LibvirtBackend, LibvirtSettings

    out: list[Backend] = [
        DockerBackend(
            DockerSettings(name="clean", backend="docker", image="busybox", host=docker_host)
        )
    ]
    for uri in libvirt_uris:
        out.append(
            LibvirtBackend(
                LibvirtSettings(name="clean", backend="libvirt", image="busybox", uri=uri)
            )
        )
    return out


def clean(
    backends: list[Backend], run_id: str | None = None, dry_run: bool = False, force: bool = False
) -> CleanReport:
    report = CleanReport()
    for b in backends:
        try:
            found = b.leftovers(run_id)
        except BenchError as e:
            report.unreachable.append(str(e))
            b.close()
            continue
        for left in found:
            if left.owner_alive and not force:
                report.live.append(left)
                continue
            if dry_run:
                report.removed.append(left)
                continue
            try:
                b.remove_leftover(left)
                report.removed.append(left)
            except Exception as e:
                report.failed.append((left, str(e)[:200]))
        b.close()
    return report

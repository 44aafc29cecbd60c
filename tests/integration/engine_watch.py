"""Watching the real engines from a test: what a bench subprocess creates, as it happens,
and removing it all afterwards whatever the test's outcome.

Everything here selects by run-id *prefix* (the `--name` a test passes to `bench run`),
so it works before the test knows the full run id and cleans up even when bench died
before printing it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.backends.base import LABEL_PLATFORM, LABEL_RUN, NAME_PREFIX
from bench.model.paths import state_dir
from tests.conftest import REPO


@dataclass(frozen=True)
class DockerEvent:
    action: str  # create, start, die, kill, destroy, ...
    run_id: str
    platform: str
    name: str
    at: float  # time.monotonic() when the test read it


class DockerEvents:
    """Container events of every run whose id starts with `prefix`, read in a thread.

    Subscribed before `bench run` starts, so no event of the run can be missed.
    """

    def __init__(self, prefix: str):
        import docker

        self.prefix = prefix
        self.events: list[DockerEvent] = []
        self._cond = threading.Condition()
        self._api = docker.APIClient(version="auto", timeout=30)
        # The call returns once dockerd has answered: from here on we are subscribed.
        self._stream = self._api.events(
            decode=True, filters={"type": "container", "label": LABEL_RUN}
        )
        self._thread = threading.Thread(target=self._read, name="test-docker-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for ev in self._stream:
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                run_id = attrs.get(LABEL_RUN, "")
                if not run_id.startswith(self.prefix):
                    continue
                action = (ev.get("Action") or ev.get("status") or "").split(":")[0]
                event = DockerEvent(
                    action,
                    run_id,
                    attrs.get(LABEL_PLATFORM, ""),
                    attrs.get("name", ""),
                    time.monotonic(),
                )
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()
        except Exception:
            pass  # the stream was closed by close()

    def wait_for(
        self,
        match: Callable[[DockerEvent], bool],
        count: int = 1,
        timeout: float = 30,
        after: int = 0,
    ) -> DockerEvent:
        """The `count`-th event (from index `after` on) that matches; fails on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self.events[after:] if match(e)]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.action, e.name) for e in self.events]
                    raise AssertionError(
                        f"no {count} matching docker event(s) within {timeout:g}s; saw {seen}"
                    )
                self._cond.wait(left)

    def mark(self) -> int:
        """Index of the next event: pass as `after=` to wait only for newer ones."""
        with self._cond:
            return len(self.events)

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:
            pass
        self._thread.join(5)
        self._api.close()


def action(*names: str) -> Callable[[DockerEvent], bool]:
    return lambda e: e.action in names


def wait_domain(
    conn: Any,
    prefix: str,
    ready: Callable[[Any], bool] = lambda _dom: True,
    timeout: float = 60,
    poll: float = 0.02,
) -> Any:
    """Poll (every `poll` s) until a domain of a run starting with `prefix` passes `ready`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for dom in domains(conn, prefix):
            try:
                if ready(dom):
                    return dom
            except Exception:
                continue  # it vanished between listing and asking
        time.sleep(poll)
    raise AssertionError(f"no domain bench-{prefix}* within {timeout:g}s")


def domain_running(dom: Any) -> bool:
    import libvirt

    return dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def domains(conn: Any, prefix: str) -> list[Any]:
    return [d for d in conn.listAllDomains() if d.name().startswith(f"{NAME_PREFIX}{prefix}")]


def containers(api: Any, prefix: str) -> list[dict[str, Any]]:
    return [
        c
        for c in api.containers(all=True, filters={"label": LABEL_RUN})
        if (c.get("Labels") or {}).get(LABEL_RUN, "").startswith(prefix)
    ]


def overlay_files(prefix: str) -> list[Path]:
    root = state_dir() / "overlays"
    if not root.is_dir():
        return []
    return sorted(f for d in root.glob(f"{prefix}*") if d.is_dir() for f in d.iterdir())


def remaining(prefix: str, docker_api: Any = None, libvirt_conn: Any = None) -> list[str]:
    """Every container, domain and overlay file of the runs starting with `prefix`."""
    out: list[str] = []
    if docker_api is not None:
        out += [f"container {c['Names'][0]} ({c['State']})" for c in containers(docker_api, prefix)]
    if libvirt_conn is not None:
        out += [f"domain {d.name()}" for d in domains(libvirt_conn, prefix)]
    out += [f"file {f}" for f in overlay_files(prefix)]
    return out


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def bench_clean(run_id: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bench_cmd("clean", "--run", run_id),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def purge(prefix: str, run_ids: list[str]) -> list[str]:
    """Remove everything of the runs starting with `prefix`; returns what was removed.

    `bench clean --run` first (for each known run id), then the SDKs directly, so a
    broken `bench clean` still leaves the host clean.
    """
    removed: list[str] = []
    for run_id in run_ids:
        try:
            bench_clean(run_id)
        except Exception:
            pass
    try:
        import docker

        api = docker.APIClient(version="auto", timeout=60)
        try:
            for c in containers(api, prefix):
                try:
                    api.remove_container(c["Id"], force=True, v=True)
                    removed.append(f"container {c['Names'][0]}")
                except Exception:
                    pass
        finally:
            api.close()
    except Exception:
        pass
    try:
        import libvirt

        conn = libvirt.open("qemu:///system")
        try:
            for dom in domains(conn, prefix):
                try:
                    if dom.isActive():
                        dom.destroy()
                    if dom.isPersistent():
                        dom.undefine()
                    removed.append(f"domain {dom.name()}")
                except libvirt.libvirtError:
                    pass
        finally:
            conn.close()
    except Exception:
        pass
    root = state_dir() / "overlays"
    if root.is_dir():
        for d in root.glob(f"{prefix}*"):
            removed.append(f"overlay dir {d}")
            shutil.rmtree(d, ignore_errors=True)
    return removed

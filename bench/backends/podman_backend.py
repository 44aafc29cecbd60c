"""podman through its REST service (`podman system service`), with the `podman` Python
bindings' HTTP client: one API call per step, no hidden inspect after create.

Three things podman 4.3 (Debian 12) does differently from docker, handled here:
- A container's OCI runtime cannot be chosen through the API: the libpod spec's
  `oci_runtime` (what the bindings' `runtime=` sends) is ignored and the service's own
  default runtime is used (podman issue #28429, fixed in later releases). bench still
  sends it, checks what the engine really used (inspect's `OCIRuntime`) in a probe
  before a run, and records it per sample. scripts/start-engines.sh starts the service
  with `--runtime runc`, bench's default.
- podman's default nofile/nproc limits (1048576) may exceed the host's hard limits (a
  sandboxed host), and then every start fails ("error setting rlimit"): bench asks for
  podman's defaults clamped to the hard limits of the service and of bench itself.
- The bindings have no attach socket: bench opens its own HTTP upgrade on the service's
  socket (docker's multiplexed stream format) before start, read by the IOHub.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

from pydantic import Field, JsonValue, field_validator

from bench.backends.base import (
    BoundaryView,
    Check,
    CliOption,
    EngineEvents,
    ExecResult,
    Instance,
    parse_pid,
    print_nothing,
)
from bench.backends.docker_backend import DockerSettings
from bench.backends.oci import (
    API_CONNECTIONS,
    API_TIMEOUT_S,
    EXIT_WAIT_S,
    PROBE_IMAGE,
    PROBE_RUN_ID,
    RUNTIME_NAME,
    RUNTIME_PROBE_TIMEOUT_S,
    VOLUME_DIR,
    ContainerBackend,
    Demux,
    EngineJson,
    binary_version,
    container_boundary,
    container_processes,
    entries,
    event_window,
    first_events,
    instance_labels,
    probe_name,
    probe_verdict,
    run_label,
    section,
    version_line,
    volume_name,
)
from bench.backends.probe_cache import ProbeResult
from bench.machines import images
from bench.model import addresses
from bench.model.errors import (
    EngineUnavailable,
    ImageError,
    MissingImage,
    RuntimeUnusable,
    UsageError,
    first_line,
)
from bench.model.records import Facts, text
from bench.model.settings import LOCAL, check_name

if TYPE_CHECKING:
    import requests
    from podman import PodmanClient
    from podman.api import APIClient

    from bench.machines.host import Host

DEFAULT_ADDRESS = "unix:///run/podman/podman.sock"
DEFAULT_RUNTIME = "runc"  # crun, podman's own default, fails on hybrid-cgroup hosts
# podman's own defaults for a rootful container (containers.conf), before clamping.
WANTED_RLIMITS = {"nofile": 1048576, "nproc": 1048576}
_RLIMIT_CONSTANTS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}
_LIMITS_ROWS = {"nofile": "Max open files", "nproc": "Max processes"}
START_HINT = "scripts/start-engines.sh (or `podman --runtime runc system service --time=0 &`)"


class PodmanSettings(DockerSettings):
    """docker's keys, same meaning: image, memory, cpus, network, env, command, ready,
    runtime; `host` is the podman service's address."""

    backend: Literal["podman"] = Field(  # type: ignore[assignment]
        description="a container through podman's REST service"
    )
    # The OCI runtime (runc, crun, runsc, ...): runc unless told, not podman's default.
    runtime: str = Field(
        DEFAULT_RUNTIME,
        min_length=1,
        max_length=64,
        pattern=RUNTIME_NAME,
        description="the OCI runtime the service must use: runc, crun, runsc, ...",
    )

    @field_validator("host")
    @classmethod
    def _readable_host(cls, v: str | None) -> str | None:
        # Memory and disk are read on this machine: a remote service would get this
        # host's figures. Never TCP: the service has no authentication.
        if v is not None and "://" not in v:
            return check_name(v)  # a `hosts:` name: placed_on() refuses a remote one
        if v is not None and not v.startswith("unix://"):
            raise ValueError(
                "only a local podman service (unix:///run/podman/podman.sock) can be measured"
            )
        if v is not None:
            addresses.check_socket(v)
        return v

    def placed_on(self, address: str) -> PodmanSettings:
        if address != LOCAL:
            raise ValueError(f"podman runs only on this machine for now, not on {address}")
        return self.model_copy(update={"host": None})


# -- pure pieces ----------------------------------------------------------------------


def parse_limits(text: str) -> dict[str, int | None]:
    """/proc/PID/limits -> {"nofile": hard, "nproc": hard}; None: unlimited."""
    out: dict[str, int | None] = {}
    for key, row in _LIMITS_ROWS.items():
        for line in text.splitlines():
            if line.startswith(row):
                fields = line[len(row) :].split()
                if len(fields) >= 2:
                    out[key] = None if fields[1] == "unlimited" else int(fields[1])
    return out


class Rlimit(TypedDict):
    """One entry of the libpod spec's r_limits."""

    type: str
    soft: int
    hard: int


def clamp_rlimits(wanted: dict[str, int], *hards: dict[str, int | None]) -> list[Rlimit]:
    """The libpod spec's r_limits: each wanted limit, soft = hard, no higher than any of
    the given hard limits (None or a missing key: unlimited)."""
    out: list[Rlimit] = []
    for name, value in wanted.items():
        for hard in hards:
            h = hard.get(name)
            if h is not None and h >= 0:
                value = min(value, h)
        out.append({"type": name, "soft": value, "hard": value})
    return out


def own_hard_limits() -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, const in _RLIMIT_CONSTANTS.items():
        hard = resource.getrlimit(const)[1]
        out[name] = None if hard == resource.RLIM_INFINITY else hard
    return out


def socket_owner_pid(path: str) -> int | None:
    """The pid of the process listening on the unix socket `path` on this machine (the
    podman service), or None when it cannot be told."""
    try:
        rows = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return None
    inodes = {
        f"socket:[{r.split()[6]}]" for r in rows if len(r.split()) >= 8 and r.split()[7] == path
    }
    if not inodes:
        return None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in inodes:
                    return int(pid)
            except OSError:
                continue
    return None


def netns(network: str) -> dict[str, JsonValue]:
    """docker's `network:` in the libpod spec: none/host/bridge/private are modes, any
    other name a network to join."""
    if network in ("none", "host", "bridge", "private"):
        return {"netns": {"nsmode": network}}
    return {"netns": {"nsmode": "bridge"}, "networks": {network: {}}}


def container_spec(
    settings: PodmanSettings,
    *,
    image: str,
    name: str,
    labels: dict[str, str],
    rlimits: list[Rlimit],
    command: list[str] | None = None,
    volume: str | None = None,
) -> dict[str, object]:
    """The libpod SpecGenerator of one instance (the body of POST /libpod/containers/create)."""
    s = settings
    spec: dict[str, object] = {
        "name": name,
        "image": image,
        "labels": labels,
        "oci_runtime": s.runtime,  # honoured by podman releases with #28429 fixed
        "r_limits": rlimits,
        **netns(s.network),
    }
    cmd = command if command is not None else s.command
    if cmd:
        spec["command"] = cmd
    if s.env:
        spec["env"] = dict(s.env)
    if volume is not None:
        spec["volumes"] = [{"Name": volume, "Dest": VOLUME_DIR}]
    limits: dict[str, dict[str, int]] = {}
    if s.memory:
        # swap = limit: no swap (a memory limit that swaps measures the disk), as docker.
        limits["memory"] = {"limit": s.memory, "swap": s.memory}
    if s.cpus:
        limits["cpu"] = {"quota": int(s.cpus * 100_000), "period": 100_000}
    if limits:
        spec["resource_limits"] = limits
    return spec


def podman_reason(text: str, runtime: str = "") -> str:
    """The runtime's own reason out of podman's error: "crun: <reason>: OCI runtime
    error" -> <reason>."""
    line = first_line(Exception(text), limit=1000).strip()
    for suffix in (": OCI runtime error", ": OCI permission denied", ": OCI not found"):
        line = line.removesuffix(suffix)
    if runtime:
        line = line.removeprefix(f"{runtime}: ")
    return line[:300] or "the runtime gave no reason"


# -- the backend ----------------------------------------------------------------------


class PodmanBackend(ContainerBackend):
    Settings = PodmanSettings
    engine = "podman"
    engine_title = "podman"
    start_hint = START_HINT

    cli_options = (
        CliOption(
            "--podman-url",
            "podman_url",
            "podman service address, unix://PATH "
            f"(default: $CONTAINER_HOST, else {DEFAULT_ADDRESS}).",
            metavar="ADDRESS",
            check=addresses.check_socket,
        ),
        CliOption(
            "--skip-podman",
            "skip_podman",
            "Do not load the bench image into podman.",
            is_flag=True,
            commands=frozenset({"images"}),
        ),
    )

    def __init__(self, settings: PodmanSettings, host: Host | None = None):
        super().__init__(settings, host)
        self.settings: PodmanSettings = settings
        self._client: PodmanClient | None = None
        self._rlimits: list[Rlimit] | None = None

    # -- CLI hooks ---------------------------------------------------------------------

    def _runtime_checks(self, probe: bool, say: Callable[[str], None]) -> list[Check]:
        """One line: the platform runtime's version and whether podman really starts the
        bench image with it (without the bench image: not probed)."""
        runtime = self.settings.runtime
        version = self.runtime_version(runtime)
        head = f"{runtime} {version}" if version else runtime
        default = self.default_runtime
        if default and default != runtime:
            head += f" (the service's default: {default})"
        if not probe:
            return [Check("podman runtime", True, f"{head}: not probed (no bench image)")]
        probed = self.probe_runtime(runtime, say)
        said = "" if probed.ok else "cannot start the bench image: "
        return [Check("podman runtime", probed.ok, f"{head}: {said}{probed.detail}", START_HINT)]

    # -- connection ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.settings.host or os.environ.get("CONTAINER_HOST") or DEFAULT_ADDRESS

    @property
    def socket_path(self) -> str:
        return self.address.removeprefix("unix://")

    def connect(self) -> PodmanClient:
        if self._client is None:
            if not self.address.startswith("unix://"):
                raise UsageError(
                    f"CONTAINER_HOST={self.address}: only a local podman service (unix://) "
                    f"can be measured; unset it or set `host: {DEFAULT_ADDRESS}`"
                )
            if not os.path.exists(self.socket_path):
                raise EngineUnavailable(
                    f"cannot reach podman: no socket at {self.socket_path}: start the service "
                    f"({START_HINT}) or set `host:`"
                )
            from podman import PodmanClient

            try:
                client = PodmanClient(
                    base_url=self.address, timeout=API_TIMEOUT_S, max_pool_size=API_CONNECTIONS
                )
                if not client.ping():
                    raise OSError("no answer to ping")
            except Exception as e:
                raise EngineUnavailable(
                    f"cannot reach podman at {self.address} ({first_line(e)}): start the "
                    f"service ({START_HINT}) or set `host:`"
                ) from None
            self._client = client
        return self._client

    def engine_events(self, insts: list[Instance]) -> EngineEvents:
        if not self.address.startswith("unix://"):
            return EngineEvents(why_not=f"engine at {self.address}: its clock is not bench's")
        window = event_window(insts)
        if window is None or not insts:
            return EngineEvents()
        since, until = window
        # libpod /events with stream=false: the past events as JSON lines, then closes.
        filters = {"label": [run_label(insts[0].run_id)], "type": ["container"]}
        # podman 4.3 answers nothing to "SECONDS.NANOSECONDS": whole seconds, wide.
        params = {"stream": "false", "since": since.split(".")[0]}
        params["until"] = str(int(until.split(".")[0]) + 1)
        params["filters"] = json.dumps(filters)
        names = {i.name for i in insts}
        for attempt in range(2):
            body = self._call("get", "/events", params=params).text
            rows = [json.loads(line) for line in body.splitlines() if line.strip()]
            found = first_events(rows, names)
            if all({"create", "start"} <= found.get(n, {}).keys() for n in names) or attempt:
                return EngineEvents(found)
            # podman writes its event log after it answers the start call: on a busy
            # host a container's events can be read before they are there (seen once in
            # a full test suite). Asked again once, a moment later.
            time.sleep(0.5)
        return EngineEvents(found)

    @property
    def api(self) -> APIClient:
        """The bindings' HTTP client: paths are relative to /vX/libpod/."""
        return self.connect().api

    def _call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        """One libpod API call; raises the bindings' APIError / NotFound on an error."""
        response = getattr(self.api, method)(path, **kwargs)
        response.raise_for_status()
        return response

    @property
    def default_runtime(self) -> str | None:
        return text(section(section(self.engine_info(), "host"), "ociRuntime").get("name"))

    def runtime_version(self, name: str) -> str | None:
        """The runtime's version: podman's info for its default, else `<name> --version`
        on the engine's host."""
        oci = section(section(self.engine_info(), "host"), "ociRuntime")
        version = text(oci.get("version"))
        if oci.get("name") == name and version:
            return version_line(version)
        return binary_version(self.host, name)

    def has_image(self, ref: str) -> bool:
        return bool(self.connect().images.exists(ref))

    def rlimits(self) -> list[Rlimit]:
        """podman's default limits, no higher than the service's and bench's hard limits."""
        if self._rlimits is None:
            hards = [own_hard_limits()]
            pid = socket_owner_pid(self.socket_path)
            if pid is not None:
                with contextlib.suppress(OSError, ValueError):
                    hards.append(parse_limits(Path(f"/proc/{pid}/limits").read_text()))
            self._rlimits = clamp_rlimits(WANTED_RLIMITS, *hards)
        return self._rlimits

    # -- runtime probe -------------------------------------------------------------------

    def probe_runtime(
        self, runtime: str, say: Callable[[str], None] = print_nothing
    ) -> ProbeResult:
        """Whether `runtime` really starts the bench image here: a container that runs
        `uname -r`, checked for the runtime podman actually used. Not cached: what runs
        depends on the runtime the service was started with (podman issue #28429)."""
        from podman.errors import APIError

        say(f"probing podman's runtime {runtime}...")
        name = probe_name(runtime, "podman")
        spec = container_spec(
            self.settings.model_copy(update={"runtime": runtime, "command": None, "env": {}}),
            image=images.docker_ref(PROBE_IMAGE),
            name=name,
            labels=instance_labels(PROBE_RUN_ID, PROBE_RUN_ID),
            rlimits=self.rlimits(),
            command=["uname", "-r"],
        )
        try:
            self._call(
                "post",
                "/containers/create",
                data=json.dumps(spec),
                headers={"content-type": "application/json"},
            )
            used = self._call("get", f"/containers/{name}/json").json().get("OCIRuntime")
            if used != runtime:
                return ProbeResult(
                    False,
                    f"podman ran the container under {used}, not {runtime}: its API ignores "
                    "a container's runtime (podman issue #28429); start the service with "
                    f"`podman --runtime {runtime} system service`",
                )
            self._call("post", f"/containers/{name}/start")
            code = self._call(
                "post",
                f"/containers/{name}/wait",
                params={"condition": "exited"},
                timeout=RUNTIME_PROBE_TIMEOUT_S,
            ).json()
            logs = self._call(
                "get", f"/containers/{name}/logs", params={"stdout": True, "stderr": True}
            )
            out = "".join(c.decode(errors="replace") for c in Demux().feed(logs.content)).strip()
        except APIError as e:
            return ProbeResult(False, podman_reason(e.explanation or str(e), runtime))
        except Exception as e:
            return ProbeResult(False, f"the probe container did not finish: {first_line(e)}")
        finally:
            with contextlib.suppress(Exception):
                self.api.delete(f"/containers/{name}", params={"force": True, "timeout": 0})
        return probe_verdict(code, out)

    def _require_runtime(self, say: Callable[[str], None]) -> None:
        if self._runtime_checked or not self.may_probe:
            return
        probed = self.probe_runtime(self.settings.runtime, say)
        if not probed.ok:
            raise RuntimeUnusable(
                f"platform {self.settings.name!r}: podman runtime {self.settings.runtime!r} "
                f"cannot start the bench image on this host: {probed.detail}"
            )
        self._runtime_checked = True

    # -- run ----------------------------------------------------------------------------

    def preflight(self) -> None:
        self._check_ready_reach()
        self.connect()
        name = self.settings.image
        if not images.is_bench_image(name) and not self.has_image(name):
            raise MissingImage(
                f"image {name!r} is not on the podman service at {self.address} and bench never "
                "pulls (hosts may be air-gapped): `podman load` it first, or use `image: busybox`"
            )
        if self.has_image(images.docker_ref(PROBE_IMAGE)):
            # Without the bench image yet, prepare() probes once it has imported it.
            self._require_runtime(self.say)

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        self.connect()
        name = self.settings.image
        if images.is_bench_image(name):
            self._image_ref = images.docker_ref(name)
        if not self.has_image(images.docker_ref(PROBE_IMAGE)) or not self.has_image(
            self._image_ref
        ):
            if not build_missing:
                raise MissingImage(
                    f"image {images.docker_ref(PROBE_IMAGE)} is not in podman's storage: run "
                    "`bench images build`"
                )
            say("loading the bench image into podman (first use on this engine)...")
            for n in {PROBE_IMAGE, name if images.is_bench_image(name) else PROBE_IMAGE}:
                self.import_image(n)
        elif build_missing and images.is_bench_image(name):
            # As on docker: another bench build's image is imported again (kept when its
            # rootfs label is this build's).
            self.import_image(name)
        self._require_runtime(say)
        img = self._call(
            "get", f"/images/{urllib.parse.quote(self._image_ref, safe='')}/json"
        ).json()
        # Created by id, not tag (as on docker: another build may re-tag mid-run).
        self._image_pin = text(img.get("Id"))
        info = self.engine_info()
        host_info = section(info, "host")
        store = section(info, "store")
        version = section(info, "version")
        self._runtime_version = self.runtime_version(self.settings.runtime)
        root = Path(text(store.get("graphRoot")) or "/var/lib/containers/storage")
        driver = text(store.get("graphDriverName")) or "overlay"
        self._storage_dirs = [root / f"{driver}-containers", root / driver]
        return {
            "engine": "podman",
            "address": self.address,
            "podman_version": version.get("Version"),
            "api_version": version.get("APIVersion"),
            "conmon_version": version_line(
                (text(section(host_info, "conmon").get("version")) or "").replace(",", "\n")
            ),
            "storage_driver": driver,
            "cgroup_version": host_info.get("cgroupVersion"),
            "cgroup_manager": host_info.get("cgroupManager"),
            "runtime": self.settings.runtime,
            "runtime_version": self._runtime_version,
            "default_runtime": self.default_runtime,
            "rlimits": {r["type"]: r["hard"] for r in self.rlimits()},
            "image": self._image_ref,
            "image_id": img.get("Id"),
            "image_bytes": img.get("Size"),
            "rootfs_sha256": ((img.get("Config") or {}).get("Labels") or {}).get(
                images.LABEL_ROOTFS
            ),
        }

    def import_image(self, name: str) -> str:
        return import_bench_image(self.connect(), name)

    def create(self, inst: Instance) -> None:
        labels = instance_labels(inst.run_id, inst.platform)
        volume = None
        if self.settings.volume:
            # Named and labelled like its container: destroy and `bench clean` remove it.
            volume = self._call(
                "post",
                "/volumes/create",
                data=json.dumps({"Name": volume_name(inst.name), "Label": labels}),
                headers={"content-type": "application/json"},
            ).json()["Name"]
            inst.info["volume"] = volume
        spec = container_spec(
            self.settings,
            image=self._image_pin or self._image_ref,
            name=inst.name,
            labels=labels,
            rlimits=self.rlimits(),
            volume=volume,
        )
        inst.info["runtime"] = self.settings.runtime
        inst.info["runtime_version"] = self._runtime_version
        created = self._call(
            "post",
            "/containers/create",
            data=json.dumps(spec),
            headers={"content-type": "application/json"},
        ).json()
        inst.handle = created["Id"]
        inst.info["container_id"] = created["Id"][:12]
        # Attach before start, so not one byte of output can be missed.
        sock, early = self._attach(inst.handle)
        self._attach_console(inst, sock, sock, early)

    def _attach(self, container_id: str) -> tuple[socket.socket, bytes]:
        """An attach stream (HTTP upgrade on the service's socket): the socket, non-blocking,
        and any stream bytes that came with the response head."""
        path = (
            f"{self.api.path_prefix.rstrip('/')}/containers/{container_id}/attach"
            "?stream=true&stdout=true&stderr=true&logs=true"
        )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(API_TIMEOUT_S)
            sock.connect(self.socket_path)
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(65536)
                if not data:
                    raise OSError("the service closed the attach connection")
                head += data
                if len(head) > 65536:
                    raise OSError("no end to the attach response's head")
            head, _, rest = head.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            if " 101 " not in f"{status} " and " 200 " not in f"{status} ":
                raise EngineUnavailable(
                    f"podman refused to attach: {status}: {rest.decode(errors='replace')[:200]}"
                )
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return sock, rest

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        # `podman exec` through the service (the bindings' exec_run: create, start, inspect).
        container = self.connect().containers.get(inst.handle)
        code, output = container.exec_run(argv, stdout=True, stderr=True, demux=True)
        out, err = output if isinstance(output, tuple) else (output, b"")
        return ExecResult(code if isinstance(code, int) else -1, out or b"", err or b"")

    def start(self, inst: Instance) -> None:
        self._call("post", f"/containers/{inst.handle}/start")

    def _inspect(self, inst: Instance) -> EngineJson:
        return self._call("get", f"/containers/{inst.handle}/json").json()

    def _wait_exit(self, inst: Instance) -> int | None:
        import requests.exceptions

        try:
            code = self._call(
                "post",
                f"/containers/{inst.handle}/wait",
                params={"condition": "exited"},
                timeout=EXIT_WAIT_S,
            ).json()
        except requests.exceptions.Timeout:
            return None
        return parse_pid(code)

    @staticmethod
    def _writable_bytes(row: EngineJson) -> int | None:
        size = section(row, "Size").get("rwSize")
        return size if isinstance(size, int) else None

    def sample(self, inst: Instance, host: Host) -> Facts:
        info = self._call("get", f"/containers/{inst.handle}/json").json()
        state = info.get("State") or {}
        # The runtime podman really used (its API may ignore the one asked for).
        inst.info["runtime"] = info.get("OCIRuntime") or inst.info.get("runtime")
        pid = state.get("Pid") or 0
        conmon = state.get("ConmonPid") or 0
        # The process view: its conmon keeps it.
        pids, runtime = container_processes(self._processes(host), pid, conmon, self.kind)
        stats: EngineJson = self._call(
            "get", "/containers/stats", params={"containers": inst.handle, "stream": False}
        ).json()
        rows = entries(stats, "Stats")
        usage = rows[0].get("MemUsage") if rows else None
        return {
            "pids": [*pids],
            "runtime_pids": [*runtime],
            "engine_mem_bytes": usage,
            "engine_mem_source": "podman stats MemUsage (its cgroup memory usage)",
            "disk_writable_bytes": self._sizes.get(inst.handle),
        }

    def boundary_view(self, inst: Instance, host: Host) -> BoundaryView:
        info = self._call("get", f"/containers/{inst.handle}/json").json()
        return container_boundary((info.get("State") or {}).get("Pid"), self.kind, "podman")

    def _remove(self, name: str) -> None:
        from podman.errors import NotFound

        try:
            # timeout=0: killed at once, like docker's forced removal.
            self._call("delete", f"/containers/{name}", params={"force": True, "timeout": 0})
        except NotFound:
            pass

    def _remove_volume(self, name: str) -> None:
        from podman.errors import NotFound

        try:
            self._call("delete", f"/volumes/{name}", params={"force": True})
        except NotFound:
            pass

    def _list_volumes(self, label: str) -> Sequence[EngineJson]:
        params = {"filters": json.dumps({"label": [label]})}
        return self._call("get", "/volumes/json", params=params).json() or []

    def _list(self, label: str, size: bool = False) -> Sequence[EngineJson]:
        params: dict[str, str | bool] = {"all": True, "filters": json.dumps({"label": [label]})}
        if size:
            params["size"] = True
        return self._call("get", "/containers/json", params=params).json() or []

    def _disconnect(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


def import_bench_image(client: PodmanClient, name: str) -> str:
    """Load the cached rootfs tar of a bench image into podman's storage (libpod's image
    import, as `podman import`); returns the image id. Same userland already there: kept."""
    manifest = images.ensure_rootfs(name)
    tar = images.image_dir(name) / "rootfs.tar"
    ref = images.docker_ref(name)
    api = client.api
    existing = None
    if client.images.exists(ref):
        existing = api.get(f"/images/{urllib.parse.quote(ref, safe='')}/json").json()
    labels = ((existing or {}).get("Config") or {}).get("Labels") or {}
    if existing and labels.get(images.LABEL_ROOTFS) == manifest["rootfs_sha256"]:
        return existing["Id"]
    try:
        with open(tar, "rb") as f:
            response = api.post(
                "/images/import",
                params={
                    "reference": ref,
                    "changes": [
                        'CMD ["/init"]',
                        f"LABEL {images.LABEL_ROOTFS}={manifest['rootfs_sha256']}",
                    ],
                },
                data=f,
                headers={"content-type": "application/x-tar"},
            )
        response.raise_for_status()
        image_id = response.json()["Id"].removeprefix("sha256:")
    except Exception as e:
        raise ImageError(f"podman import of {tar} failed: {first_line(e)}") from None
    if existing and existing["Id"] != image_id:
        # The old build is now untagged; drop it unless a container still uses it.
        with contextlib.suppress(Exception):
            api.delete(f"/images/{existing['Id']}")
    return image_id

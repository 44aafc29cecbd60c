"""Docker Engine through the docker SDK (low-level APIClient: one API call per step,
no hidden inspect round-trips inflating `create_s`)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar, Literal, overload

from pydantic import Field, field_validator, model_validator

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
    EngineJson,
    binary_version,
    cgroup_memory,
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
    volume_name,
)
from bench.backends.probe_cache import RUNTIME_CACHE, ProbeCache, ProbeResult
from bench.machines import images, procfs
from bench.model import addresses, kinds
from bench.model.errors import (
    EngineUnavailable,
    ImageError,
    MissingImage,
    RuntimeUnusable,
    UnknownRuntime,
    UsageError,
    first_line,
)
from bench.model.records import Facts, text
from bench.model.settings import (
    LOCAL,
    NETWORK_READY,
    READY_KINDS,
    KeyedValueError,
    PlatformBase,
    check_name,
)

if TYPE_CHECKING:
    import docker

    from bench.machines.host import Host

TRANSPORT_JOIN_S = 5  # a dying SSH transport's thread ends within a read timeout
_SDK_LOCK = threading.Lock()
# Instance.info key (never stored: `_`): the container's init pid, as the engine last said.
PID_KEY = "_pid"


class DockerSettings(PlatformBase):
    backend: Literal["docker"] = Field(description="a container on Docker Engine")
    cpus: float | None = Field(None, gt=0, le=1024, description="CPU limit, e.g. 1 or 0.5")
    network: str = Field(
        "none",
        min_length=1,
        max_length=64,
        description="network mode: none, bridge (needed by tcp: and http: readiness), host, "
        "or a network's name",
    )
    # Docker Engine address: unix:///path/to/docker.sock, ssh://user@host[:port] (an
    # engine on another machine, measured there over SSH), or a name from the scenario's
    # `hosts:`; default: $DOCKER_HOST, else unix:///var/run/docker.sock.
    host: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="engine address: unix://PATH, ssh://USER@HOST[:PORT] or a name from "
        "hosts: (default: $DOCKER_HOST, else the local socket)",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables of the container"
    )
    volume: bool = Field(
        False,
        description="attach a volume bench creates (and removes) at /bench-volume, for the "
        "*-volume workloads",
    )
    # An OCI runtime the daemon has registered (runc, runsc, crun, ...); default: the
    # daemon's default runtime.
    runtime: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=RUNTIME_NAME,
        description="an OCI runtime the daemon has registered: runc, runsc, crun, ... "
        "(default: the daemon's default)",
    )

    ready_kinds: ClassVar[frozenset[str]] = frozenset(READY_KINDS)

    @model_validator(mode="after")
    def _network_for_ready(self) -> DockerSettings:
        # A probe from this host into the container needs a way in: `none` has only lo.
        kind = self.ready.kind
        if kind in NETWORK_READY and self.network == "none":
            raise KeyedValueError(
                "network",
                f"ready: {kind} probes the container's port from this host, which network "
                "none cannot reach: set network: bridge",
            )
        return self

    @field_validator("host")
    @classmethod
    def _readable_host(cls, v: str | None) -> str | None:
        # Memory and disk are read on the engine's machine: here for a socket, over SSH
        # for ssh://. An engine bench cannot read the machine of (tcp://) is refused.
        if v is not None and "://" not in v:
            return check_name(v)  # a `hosts:` name: the scenario resolves it
        if v is not None:
            addresses.check_docker(v)
        return v

    def placed_on(self, address: str) -> DockerSettings:
        return self.model_copy(update={"host": None if address == LOCAL else address})


class DockerBackend(ContainerBackend):
    Settings = DockerSettings
    engine = "docker"
    engine_title = "Docker Engine"
    start_hint = "dockerd & (or: make demo)"
    # A teardown kills every container before it removes any. dockerd reads the host's
    # whole mount table when a container exits and again when it removes one, and
    # runc does as well; every running container has two lines in that table. After the
    # kills, the removals find the table nearly empty. Here, for 2048 busybox
    # containers, 16 calls in flight: kill all, then remove all, took 155 s; a forced
    # remove of each took 239 s. At 32 and 256 containers the two orders took the same
    # time (benchmarks/results.md).
    halt_first = True
    # Seen fourteen times here, stopping 64-2048 containers (kills or forced removes: each
    # exit takes libnetwork's two locks in the opposite order to its watch loop); fixed by
    # moby/moby#42545 (23.0), backported to 20.10.27 (libnetwork#2679), which Debian 12's
    # 20.10.24 lacks. Calls on containers then hang while `docker ps` still answers, so
    # only a restart of dockerd clears it.
    stall_hint = (
        "dockerd 20.10 can deadlock while many containers stop at once (moby/moby#42545; "
        "`docker ps` still answers, `docker rm` hangs): restart dockerd"
    )

    def __init__(self, settings: DockerSettings, host: Host | None = None):
        super().__init__(settings, host)
        self.settings: DockerSettings = settings
        self._api: docker.APIClient | None = None
        # `network: none` without libnetwork's sandbox (prepare() decides, by version).
        self._network_disabled = False

    cli_options = (
        CliOption(
            "--docker-host",
            "docker_host",
            "Docker Engine address, unix://PATH or ssh://USER@HOST[:PORT] (default: $DOCKER_HOST).",
            metavar="ADDRESS",
            check=addresses.check_docker,
        ),
        CliOption(
            "--skip-docker",
            "skip_docker",
            "Do not build the bench image in Docker.",
            is_flag=True,
            commands=frozenset({"images"}),
        ),
    )

    def version_checks(self, version: EngineJson) -> list[Check]:
        if not lacks_deadlock_fix(str(version.get("Version") or "")):
            return []
        return [
            Check(
                "docker bug",
                True,
                f"Engine {version.get('Version')} predates the fix of moby/moby#42545 "
                f"(in {DEADLOCK_FIXED_IN}): it can deadlock while many containers stop at once",
                "a Docker Engine of 20.10.27, 23.0 or later (Debian 13's docker.io is 26.1)",
                warn=True,
            )
        ]

    def _runtime_checks(self, probe: bool, say: Callable[[str], None]) -> list[Check]:
        """One line per registered runtime: its version and whether it can really start
        the bench image here (the probe `runtime:` platforms pass, cached)."""
        info = self.engine_info()
        default = info.get("DefaultRuntime")
        checks = []
        for name in sorted(section(info, "Runtimes")):
            version = self.runtime_version(name)
            head = f"{name} {version}" if version else name
            if name == default:
                head += " (default)"
            if not probe:
                detail = f"{head}: not probed (no bench image)"
                checks.append(Check(f"runtime {name}", True, detail))
                continue
            result = self.probe_runtime(name, say)
            if result.ok:
                checks.append(Check(f"runtime {name}", True, f"{head}: {result.detail}"))
            elif name == default:
                # Every docker platform without `runtime:` uses it: bench cannot run here.
                checks.append(
                    Check(
                        f"runtime {name}",
                        False,
                        f"{head}: cannot start the bench image: {result.detail}",
                        "set another default-runtime in /etc/docker/daemon.json",
                    )
                )
            else:
                # A fact about this host, like TCG-only: bench refuses such platforms.
                checks.append(
                    Check(
                        f"runtime {name}",
                        True,
                        f"{head}: cannot start the bench image on this host "
                        f"({result.detail}); platforms with `runtime: {name}` are refused",
                    )
                )
        return checks

    @property
    def _local(self) -> bool:
        """An engine on this machine: its containers' cgroup files are this host's."""
        return self.address.startswith("unix://")

    @property
    def address(self) -> str:
        return self.settings.host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def connect(self) -> docker.APIClient:
        if self._api is None:
            docker = docker_sdk(ssh=self.address.startswith("ssh://"))
            try:
                # `host:` was checked with the scenario; $DOCKER_HOST is checked here,
                # before docker-py pastes an ssh:// host into the user's ProxyCommand.
                addresses.check_docker(self.address)
            except ValueError as e:
                raise UsageError(f"DOCKER_HOST={e}; unset DOCKER_HOST or set `host:`") from None
            if self.address.startswith("unix://"):
                sock = self.address.removeprefix("unix://")
                if not os.path.exists(sock):
                    raise EngineUnavailable(
                        f"cannot reach Docker Engine: no socket at {sock}: start it "
                        "(`dockerd &`, `systemctl start docker` or `make demo`) or set `host:`"
                    )
            try:
                api = docker.APIClient(
                    base_url=self.address,
                    timeout=API_TIMEOUT_S,
                    version="auto",
                    # Launches, sampling and teardown run many calls at once (over ssh://
                    # each is a session of one SSH connection: sshd's MaxSessions bounds it).
                    max_pool_size=API_CONNECTIONS,
                    # ssh://: paramiko, which reads ~/.ssh/config and known_hosts and refuses
                    # an unknown host key; BENCH_DOCKER_SSH_CLIENT=1 uses the ssh binary.
                    use_ssh_client=os.environ.get("BENCH_DOCKER_SSH_CLIENT") == "1",
                )
                api.ping()
            except Exception as e:
                raise EngineUnavailable(
                    f"cannot reach Docker Engine at {self.address} ({first_line(e)}): start it "
                    "(`dockerd &`, `systemctl start docker` or `make demo`) or set `host:`"
                ) from None
            self._api = api
        return self._api

    @contextlib.contextmanager
    def _answering(self, what: str) -> Iterator[None]:
        """An engine that took the connection and answered ping, then let a call run out
        its timeout, is wedged, not slow (dockerd 20.10's deadlock blocks `info` and every
        container call): say so in one line, exit 3, instead of a bare ReadTimeout."""
        import requests.exceptions

        try:
            yield
        except requests.exceptions.Timeout as e:
            raise EngineUnavailable(
                f"the Docker Engine at {self.address} answers ping but not {what} "
                f"({first_line(e, 120)}): {self.stall_hint}"
            ) from None

    def preflight(self) -> None:
        with self._answering("the checks before a run"):
            self._preflight()

    def _preflight(self) -> None:
        self._check_ready_reach()
        self.connect()
        runtime = self.settings.runtime
        if runtime is not None:
            registered = sorted(section(self.engine_info(), "Runtimes"))
            if runtime not in registered:
                raise UnknownRuntime(
                    f"runtime {runtime!r} is not registered with the Docker Engine at "
                    f"{self.address} (registered: {', '.join(registered) or 'none'}): register "
                    "it in /etc/docker/daemon.json (scripts/setup-host.sh does runsc and crun)"
                )
        name = self.settings.image
        if not images.is_bench_image(name) and not self.has_image(name):
            raise MissingImage(
                f"image {name!r} is not on {self.address} and bench never pulls (hosts may be "
                "air-gapped): `docker load` it first, or use `image: busybox`"
            )
        if runtime is not None and self.has_image(images.docker_ref(PROBE_IMAGE)):
            # Without the bench image yet, prepare() probes once it has imported it.
            self._require_runtime(self.say)

    def _require_runtime(self, say: Callable[[str], None]) -> None:
        """Refuse a `runtime:` that cannot start the bench image on this host (exit 3),
        with the runtime's own reason: every instance would fail the same way."""
        runtime = self.settings.runtime
        if runtime is None or self._runtime_checked:
            return
        result = self.probe_runtime(runtime, say, start=self.may_probe)
        if result is None:
            return  # not probed yet, and not allowed to (bench validate)
        if not result.ok:
            raise RuntimeUnusable(
                f"platform {self.settings.name!r}: runtime {runtime!r} cannot start the bench "
                f"image on this host: {result.detail}"
            )
        self._runtime_checked = True

    @property
    def runtime(self) -> str | None:
        """The OCI runtime instances run under: `runtime:`, else the daemon's default."""
        return self.settings.runtime or text(self.engine_info().get("DefaultRuntime"))

    def runtime_version(self, name: str) -> str | None:
        """`<runtime binary> --version`, first line, on the engine's host (docker's info
        names the binary but not its version)."""
        conf = section(section(self.engine_info(), "Runtimes"), name)
        path = text(conf.get("path"))
        if not path:
            return None  # a containerd shim (runtimeType) has no binary to ask
        return binary_version(self.host, path)

    @overload  # a start always gives a result
    def probe_runtime(
        self, runtime: str, say: Callable[[str], None] = ..., *, start: Literal[True] = ...
    ) -> ProbeResult: ...
    @overload
    def probe_runtime(
        self, runtime: str, say: Callable[[str], None] = ..., *, start: bool
    ) -> ProbeResult | None: ...
    def probe_runtime(
        self, runtime: str, say: Callable[[str], None] = print_nothing, *, start: bool = True
    ) -> ProbeResult | None:
        """Whether `runtime` can start the bench image here. Only a real start tells
        (crun is registered fine on a hybrid-cgroup host, then refuses every container);
        cached per host, daemon and runtime, like the KVM probe. Without `start`, only
        a cached result (None if there is none)."""
        info = self.engine_info()
        key = runtime_probe_key(self.host.key, info, runtime)
        cache = ProbeCache.named(RUNTIME_CACHE)
        known = cache.get(key)
        if known is not None or not start:
            return known
        say(f"probing runtime {runtime} (once per host, then cached)...")
        result = self._probe_runtime(runtime)
        cache.put(key, result, runtime=runtime)
        return result

    def _probe_runtime(self, runtime: str) -> ProbeResult:
        import docker.errors

        api = self.connect()
        name = probe_name(runtime)
        try:
            created = api.create_container(
                images.docker_ref(PROBE_IMAGE),
                command=["uname", "-r"],
                name=name,
                labels=instance_labels(PROBE_RUN_ID, PROBE_RUN_ID),
                host_config=api.create_host_config(network_mode="none", runtime=runtime),
                detach=True,
            )
            api.start(created["Id"])
            # docker-py hands the timeout to requests, which takes a float; its stubs say int.
            status = api.wait(created["Id"], timeout=RUNTIME_PROBE_TIMEOUT_S)  # type: ignore[arg-type]
            out = api.logs(created["Id"]).decode(errors="replace").strip()
        except docker.errors.APIError as e:
            return ProbeResult(False, runtime_reason(e.explanation or str(e), runtime))
        except Exception as e:  # a timeout, a dropped connection
            return ProbeResult(False, f"the probe container did not finish: {first_line(e)}")
        finally:
            with contextlib.suppress(Exception):
                api.remove_container(name, force=True, v=True)
        return probe_verdict(status.get("StatusCode"), out)

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        with self._answering("its image, version and info queries"):
            return self._prepare(build_missing=build_missing, say=say)

    def _prepare(self, *, build_missing: bool, say: Callable[[str], None]) -> Facts:
        api = self.connect()
        name = self.settings.image
        if images.is_bench_image(name):
            self._image_ref = images.docker_ref(name)
            if not self.has_image(self._image_ref):
                if not build_missing:
                    raise MissingImage(
                        f"image {self._image_ref} is not built: run `bench images build`"
                    )
                say(f"importing the bench image {self._image_ref} (first use on this engine)...")
                self.import_image(name)
            elif build_missing:
                # One imported from another bench's build (its init, its tools) is not
                # this bench's userland: import_image imports it again when its rootfs
                # label differs from this build's, and keeps it when it matches.
                self.import_image(name)
        if self.settings.runtime is not None and not self._runtime_checked:
            # preflight() could not probe: the bench image was not on the engine yet.
            if not self.has_image(images.docker_ref(PROBE_IMAGE)):
                if not build_missing:
                    raise MissingImage(
                        f"image {images.docker_ref(PROBE_IMAGE)} (the runtime probe's) is not "
                        "built: run `bench images build`"
                    )
                self.import_image(PROBE_IMAGE)
            self._require_runtime(say)
        # Three round trips that wait on nothing but the engine (the last: docker info,
        # then the runtime's `--version` on its host): at once, about 30 ms one after
        # another here, now about the longest of them (17 ms) before the first launch.
        with ThreadPoolExecutor(3, thread_name_prefix="bench-prepare") as pool:
            img_asked = pool.submit(api.inspect_image, self._image_ref)
            version_asked = pool.submit(api.version)
            runtime_asked = pool.submit(lambda: self.runtime_version(self.runtime or ""))
            img = img_asked.result()
            # Instances are created from this image by its id, not its tag: another bench
            # build on the same engine may import its own image under the tag mid-run,
            # and one run's instances must all run the userland it recorded.
            self._image_pin = str(img["Id"])
            version: EngineJson = version_asked.result()
            runtime_version = runtime_asked.result()
        self._network_disabled = self.settings.network == "none" and lacks_deadlock_fix(
            str(version.get("Version") or "")
        )
        if self._network_disabled:
            say(
                f"docker {version.get('Version')}: platform {self.settings.name!r}'s containers "
                "get no network sandbox (NetworkDisabled), which avoids the engine's teardown "
                "deadlock (moby/moby#42545)"
            )
        components = {c.get("Name"): c.get("Version") for c in entries(version, "Components")}
        info = self.engine_info()
        self._runtime_version = runtime_version if self.runtime else None
        self.kind = kinds.for_runtime(self.runtime)
        root = Path(text(info.get("DockerRootDir")) or "/var/lib/docker")
        driver = text(info.get("Driver")) or "overlay2"
        self._storage_dirs = [root / "containers", root / driver]
        return {
            "engine": "docker",
            "address": self.address,
            "docker_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "containerd_version": components.get("containerd"),
            "runc_version": components.get("runc"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "runtime": self.runtime,
            "runtime_version": self._runtime_version,
            "default_runtime": info.get("DefaultRuntime"),
            "network": self.settings.network,
            "network_sandbox": not self._network_disabled,
            "image": self._image_ref,
            "image_id": img["Id"],
            "image_bytes": img.get("Size"),
            "rootfs_sha256": (img.get("Config") or {}).get("Labels", {}).get(images.LABEL_ROOTFS),
        }

    def has_image(self, ref: str) -> bool:
        api = self.connect()  # first: it imports the SDK as this engine's address needs
        import docker.errors

        try:
            api.inspect_image(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def import_image(self, name: str) -> str:
        return import_bench_image(self.connect(), name)

    @contextlib.contextmanager
    def _ssh_sessions(self) -> Iterator[None]:
        """Over ssh:// every call in flight and every attached console is a session of one
        SSH connection; when sshd's MaxSessions is reached paramiko only says "Connect
        failed". Say what it means."""
        try:
            yield
        except Exception as e:
            if type(e).__name__ != "ChannelException":
                raise
            raise EngineUnavailable(
                f"sshd at {self.address} refused another session ({first_line(e)}): each "
                "Docker call in flight and each attached console is one; raise sshd's "
                "MaxSessions there (default 10) above N + launch.concurrency + 16"
            ) from None

    def create(self, inst: Instance) -> None:
        with self._ssh_sessions():
            self._create(inst)

    def _create(self, inst: Instance) -> None:
        api = self.connect()
        s = self.settings
        binds: list[str] | None = None
        if s.volume:
            # Named and labelled like its container: destroy and `bench clean` remove it.
            volume = api.create_volume(
                volume_name(inst.name), labels=instance_labels(inst.run_id, inst.platform)
            )
            binds = [f"{volume['Name']}:{VOLUME_DIR}:rw"]
            inst.info["volume"] = volume["Name"]
        host_config = api.create_host_config(
            binds=binds,
            mem_limit=s.memory,
            memswap_limit=s.memory,  # no swap: a memory limit that swaps measures the disk
            nano_cpus=int(s.cpus * 1e9) if s.cpus else None,
            network_mode=s.network,
            runtime=s.runtime,  # None: the daemon's default
        )
        inst.info["runtime"] = self.runtime
        inst.info["runtime_version"] = self._runtime_version
        created = api.create_container(
            self._image_pin or self._image_ref,
            command=s.command,
            name=inst.name,
            labels=instance_labels(inst.run_id, inst.platform),
            host_config=host_config,
            environment=s.env or None,
            detach=True,
            tty=False,
            # The container still gets a network namespace of its own with only `lo` (the
            # runtime makes it), as under `none`; libnetwork makes no sandbox or endpoint,
            # and so cannot reach the lock-order deadlock between an endpoint's deletion
            # and another container's sandbox leave (processEndpointDelete against
            # getSvcRecords, libnetwork#2649), which 20.10 before .27 has.
            network_disabled=self._network_disabled,
        )
        inst.handle = created["Id"]
        inst.info["container_id"] = created["Id"][:12]
        # Attach before start, so not one byte of output can be missed.
        sock = api.attach_socket(
            inst.handle, params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        )
        raw = getattr(sock, "_sock", sock)
        raw.setblocking(False)
        self._attach_console(inst, sock, raw)

    def start(self, inst: Instance) -> None:
        self.connect().start(inst.handle)

    def engine_events(self, insts: list[Instance]) -> EngineEvents:
        if not self._local:
            # Its timeNano is that machine's wall clock, the launch instants this one's.
            return EngineEvents(why_not=f"engine at {self.address}: its clock is not bench's")
        window = event_window(insts)
        if window is None or not insts:
            return EngineEvents()
        since, until = window
        # A bounded query of past events (since/until): it returns once `until` passed.
        # The stubs say int, the SDK passes any value on: "SECONDS.NANOSECONDS" is the
        # daemon's own form, so `until` is now, not the next whole second.
        rows = self.connect().events(  # type: ignore[call-overload]
            since=since,
            until=until,
            filters={"label": run_label(insts[0].run_id), "type": "container"},
            decode=True,
        )
        return EngineEvents(first_events(rows, {i.name for i in insts}))

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        # `docker exec`: the container's namespaces, cgroup and runtime (runsc serves the
        # command's system calls like the init's). Output arrives at its end: the call's
        # own timeout (API_TIMEOUT_S) bounds how long a workload may run.
        api = self.connect()
        exec_id = api.exec_create(inst.handle, argv, stdout=True, stderr=True)["Id"]
        out, err = api.exec_start(exec_id, demux=True)
        code = api.exec_inspect(exec_id).get("ExitCode")
        return ExecResult(code if isinstance(code, int) else -1, out or b"", err or b"")

    def _list(self, label: str, size: bool = False) -> Sequence[EngineJson]:
        return self.connect().containers(all=True, filters={"label": label}, size=size)

    @staticmethod
    def _writable_bytes(row: EngineJson) -> int | None:
        # The engine leaves SizeRw out when the writable layer is empty.
        size = row.get("SizeRw", 0)
        return size if isinstance(size, int) else None

    def sample(self, inst: Instance, host: Host) -> Facts:
        with self._ssh_sessions():
            return self._sample(inst, host)

    def _sample(self, inst: Instance, host: Host) -> Facts:
        api = self.connect()
        size_rw = self._sizes.get(inst.handle)
        # The boundary measurement asked the engine for the pid a moment ago: one inspect
        # per instance less (32 concurrent ones cost 0.1-0.2 s here). A container that
        # died since has no process and no cgroup left, so its stale pid reads as nothing.
        known = inst.info.get(PID_KEY)
        pid = (
            known
            if isinstance(known, int)
            else api.inspect_container(inst.handle)["State"].get("Pid") or 0
        )
        # The process view: its containerd-shim (the parent of its init) keeps it.
        procs = self._processes(host)
        keeper = procs.parent(pid) if pid else None
        pids, runtime = container_processes(procs, pid, keeper, self.kind)
        # A local engine's containers: their cgroup files, read directly (no stats call).
        mem: tuple[int | None, str] | None
        mem = cgroup_memory(host, pid, inst.handle) if pid and self._local else None
        if mem is None:  # a remote engine, or a cgroup bench cannot read here
            stats = api.stats(inst.handle, stream=False, one_shot=True)
            raw = stats.get("memory_stats") or {}
            usage, st = raw.get("usage"), raw.get("stats") or {}
            figure = procfs.docker_mem_usage(usage, st) if usage is not None else None
            mem = figure, "docker stats: usage - inactive_file"
        return {
            "pids": [*pids],
            "runtime_pids": [*runtime],
            "engine_mem_bytes": mem[0],
            "engine_mem_source": mem[1],
            "disk_writable_bytes": size_rw,
        }

    def _inspect(self, inst: Instance) -> EngineJson:
        with self._ssh_sessions():
            return self.connect().inspect_container(inst.handle)

    def _wait_exit(self, inst: Instance) -> int | None:
        import requests.exceptions

        try:
            with self._ssh_sessions():
                status = self.connect().wait(
                    inst.handle,
                    timeout=EXIT_WAIT_S,
                    condition="not-running",
                )
        except requests.exceptions.ConnectionError as e:
            # docker-py turns a read timeout into a ConnectionError on some versions.
            if "timed out" not in str(e):
                raise
            return None
        except requests.exceptions.Timeout:
            return None
        return parse_pid(status.get("StatusCode"))

    def boundary_view(self, inst: Instance, host: Host) -> BoundaryView:
        with self._ssh_sessions():
            state = self.connect().inspect_container(inst.handle).get("State") or {}
        inst.info[PID_KEY] = state.get("Pid")
        return container_boundary(state.get("Pid"), self.kind, "docker")

    def halt(self, inst: Instance) -> None:
        api = self.connect()  # first: it imports the SDK as this engine's address needs
        import docker.errors

        self._detach(inst)
        try:
            api.kill(inst.handle or inst.name)  # SIGKILL
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: not running (exited by itself, or killed)
                raise

    def _remove(self, name: str) -> None:
        api = self.connect()  # first: it imports the SDK as this engine's address needs
        import docker.errors

        try:
            api.remove_container(name, force=True, v=True)
        except docker.errors.NotFound:
            pass

    def _remove_volume(self, name: str) -> None:
        import docker.errors

        try:
            self.connect().remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass

    def _list_volumes(self, label: str) -> Sequence[EngineJson]:
        return self.connect().volumes(filters={"label": label}).get("Volumes") or []

    def _disconnect(self) -> None:
        api, self._api = self._api, None
        if api is None:
            return
        # Over ssh:// after a dropped connection, closing a pooled channel while
        # paramiko's transport thread is still dying raises EOFError; the first one
        # aborts the pool's close and urllib3's finalizer raises the rest at garbage
        # collection ("Exception ignored ..." on stderr). Closing the transport and
        # waiting for its thread first marks every channel closed, so nothing is sent.
        for adapter in api.adapters.values():
            ssh = getattr(adapter, "ssh_client", None)
            transport = ssh.get_transport() if ssh is not None else None
            if transport is not None:
                transport.close()
                transport.join(TRANSPORT_JOIN_S)
        api.close()


DEADLOCK_FIXED_IN = "Engine 20.10.27 and 23.0"


class _NoParamiko(importlib.abc.MetaPathFinder):
    """Refuses `import paramiko` in one thread (the one importing the docker SDK for a
    socket engine); other threads import it as ever."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "paramiko" and threading.get_ident() == self.thread:
            raise ImportError("paramiko: not needed for a socket engine", name=name)


def docker_sdk(*, ssh: bool) -> ModuleType:
    """The docker SDK, imported for an engine on a socket (`ssh` False) or over ssh://.

    docker-py imports its ssh:// transport at once, and with it paramiko, cryptography,
    invoke and asyncio: 0.3 s of `bench run`'s start-up here, and 0.1-0.2 s more as
    the process exits. It treats paramiko as optional (docker.transport imports the
    transport under `except ImportError`, as a Windows-only one), so for a socket
    engine it is imported without; the first ssh:// engine of the process adds the
    transport where docker.api.client looks it up (docker 7.x)."""
    with _SDK_LOCK:
        if not ssh and "docker" not in sys.modules and "paramiko" not in sys.modules:
            finder = _NoParamiko()
            sys.meta_path.insert(0, finder)
            try:
                import docker
            finally:
                sys.meta_path.remove(finder)
        import docker
        import docker.api.client

        if ssh and not hasattr(docker.api.client, "SSHHTTPAdapter"):
            from docker.transport.sshconn import SSHHTTPAdapter

            docker.api.client.SSHHTTPAdapter = SSHHTTPAdapter  # type: ignore[attr-defined]
            docker.transport.SSHHTTPAdapter = SSHHTTPAdapter  # type: ignore[attr-defined]
        return docker


def lacks_deadlock_fix(version: str) -> bool:
    """Whether a Docker Engine version ("20.10.24+dfsg1", "26.1.5+dfsg1") is older than
    the libnetwork fix of moby/moby#42545. Docker went from 20.10 to 23.0; a version
    bench cannot read is not accused."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return m is not None and tuple(map(int, m.groups())) < (20, 10, 27)


def runtime_probe_key(host_key: str, info: EngineJson, runtime: str) -> str:
    """The cache key of a runtime probe: re-probe when anything that decides whether the
    runtime works has changed (the host, the daemon and its version, the runtime's
    registration, the kernel and its cgroup set-up)."""
    conf = section(info, "Runtimes").get(runtime)
    parts = [
        host_key,
        info.get("ID"),
        info.get("ServerVersion"),
        runtime,
        json.dumps(conf, sort_keys=True),
        info.get("KernelVersion"),
        info.get("CgroupVersion"),
        info.get("CgroupDriver"),
    ]
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


# What dockerd and containerd wrap a runtime's own message in.
_REASON_PREFIXES = (
    "failed to create shim task: ",
    "failed to create shim: ",
    "OCI runtime create failed: ",
    "OCI runtime start failed: ",
    "runc create failed: ",
)


def runtime_reason(text: str, runtime: str = "") -> str:
    """A runtime's own one-line reason out of dockerd's error for a failed start:
    "failed to create shim: OCI runtime create failed: <reason>: unknown" -> <reason>
    (also without a "crun: " naming the runtime again)."""
    line = first_line(Exception(text), limit=1000)
    for prefix in _REASON_PREFIXES:
        if prefix in line:
            line = line.split(prefix, 1)[1]
    line = line.strip()
    if runtime:
        line = line.removeprefix(f"{runtime}: ")
    for suffix in (": unknown", ": Unknown"):
        line = line.removesuffix(suffix)
    return line[:300] or "the runtime gave no reason"


def import_bench_image(api: docker.APIClient, name: str) -> str:
    """`docker import` the cached rootfs tar of a bench image; returns the image id."""
    manifest = images.ensure_rootfs(name)
    tar = images.image_dir(name) / "rootfs.tar"
    ref = images.docker_ref(name)
    try:
        existing = api.inspect_image(ref)
    except Exception:
        existing = None
    previous = existing["Id"] if existing else None
    labels = ((existing or {}).get("Config") or {}).get("Labels") or {}
    if previous is not None and labels.get(images.LABEL_ROOTFS) == manifest["rootfs_sha256"]:
        # Same userland already imported: a new import would only change the image id
        # (docker stamps the import time), which reads as "a different image" later.
        return previous
    changes = [
        'CMD ["/init"]',
        f"LABEL {images.LABEL_ROOTFS}={manifest['rootfs_sha256']}",
    ]
    try:
        api.import_image_from_file(
            str(tar),
            repository=images.DOCKER_REPO.format(name=name),
            tag=images.DOCKER_TAG,
            changes=changes,
        )
    except Exception as e:
        raise ImageError(f"docker import of {tar} failed: {first_line(e)}") from None
    image_id = api.inspect_image(ref)["Id"]
    if previous and previous != image_id:
        # The old build is now untagged; drop it unless a container still uses it.
        try:
            api.remove_image(previous)
        except Exception:
            pass
    return image_id

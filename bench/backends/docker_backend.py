"""Docker Engine through the docker SDK (low-level APIClient: one API call per step,
no hidden inspect round-trips inflating `create_s`)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator

from bench import images
from bench.backends.base import (
    LABEL_OWNER,
    LABEL_OWNER_HOST,
    LABEL_PLATFORM,
    LABEL_PREFIX,
    LABEL_RUN,
    Backend,
    Check,
    CliOption,
    Instance,
    Leftover,
    parse_pid,
    print_nothing,
)
from bench.errors import (
    BenchError,
    EngineUnavailable,
    ImageError,
    MissingImage,
    UsageError,
    first_line,
)
from bench.iohub import IOHub
from bench.owner import owner_labels
from bench.settings import PlatformBase

if TYPE_CHECKING:
    from bench.host import Host

API_TIMEOUT_S = 60  # every engine call is bounded: a dead dockerd must not hang a run
API_CONNECTIONS = 64


class DockerSettings(PlatformBase):
    backend: Literal["docker"]
    cpus: float | None = Field(None, gt=0, le=1024)
    network: str = Field("none", min_length=1, max_length=64)
    # Docker Engine address, unix:///path/to/docker.sock (local engines only, see below);
    # default: $DOCKER_HOST, else unix:///var/run/docker.sock.
    host: str | None = Field(None, max_length=512)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("host")
    @classmethod
    def _local_only(cls, v: str | None) -> str | None:
        # Memory and disk are read on this machine (/proc, the engine's storage):
        # a remote engine would get this host's figures. Remote hosts need a remote Host.
        if v is not None and not v.startswith("unix://"):
            raise ValueError(
                "only a local engine (unix:///path/to/docker.sock) can be measured for now"
            )
        return v


class _Demux:
    """Split docker's multiplexed attach stream (8-byte frame headers) into payloads."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while len(self._buf) >= 8:
            (size,) = struct.unpack(">I", self._buf[4:8])
            if len(self._buf) < 8 + size:
                break
            out.append(self._buf[8 : 8 + size])
            self._buf = self._buf[8 + size :]
        return out


class DockerBackend(Backend):
    kind = "container"
    Settings = DockerSettings

    def __init__(self, settings: DockerSettings, host: Host | None = None):
        super().__init__(settings, host)
        self.settings: DockerSettings = settings
        self._api: Any = None
        self._hub: IOHub | None = None
        self._image_ref = settings.image
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._procs: Any = None  # host process table, per sampling round
        self._storage_dirs: list[Path] = []

    cli_options = (
        CliOption(
            "--docker-host",
            "docker_host",
            "Docker Engine address, unix://PATH (default: $DOCKER_HOST).",
            metavar="ADDRESS",
        ),
        CliOption(
            "--skip-docker",
            "skip_docker",
            "Build only the VM artifacts.",
            is_flag=True,
            commands=frozenset({"images"}),
        ),
    )

    @classmethod
    def _for_options(cls, options: dict[str, Any], name: str) -> DockerBackend:
        host = options.get("docker_host")
        try:
            settings = DockerSettings(name=name, backend="docker", image="busybox", host=host)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise UsageError(f"--docker-host {host}: {msg}") from None
        return cls(settings)

    @classmethod
    def for_cleanup(cls, options: dict[str, Any]) -> list[Backend]:
        return [cls._for_options(options, "clean")]

    @classmethod
    def doctor_checks(cls, options: dict[str, Any], say: Callable[[str], None]) -> list[Check]:
        docker = cls._for_options(options, "doctor")
        try:
            v = docker.connect().version()
            checks = [
                Check("docker", True, f"Docker Engine {v.get('Version')} at {docker.address}")
            ]
            ref = images.docker_ref("busybox")
            has = docker.has_image(ref)
            checks.append(
                Check("docker image", has, ref if has else f"{ref} missing", "bench images build")
            )
            return checks
        except BenchError as e:
            return [Check("docker", False, str(e), "dockerd & (or: make demo)", engine=True)]
        finally:
            docker.close()

    @classmethod
    def build_images(
        cls, name: str, options: dict[str, Any], say: Callable[[str], None]
    ) -> list[tuple[str, str]]:
        if options.get("skip_docker"):
            return []
        backend = cls._for_options(options, "images")
        try:
            image_id = import_bench_image(backend.connect(), name)
        finally:
            backend.close()
        return [("docker", f"{images.docker_ref(name)} ({image_id[7:19]})")]

    @property
    def address(self) -> str:
        return self.settings.host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def engine_address(self) -> str | None:
        return self.address

    def connect(self) -> Any:
        if self._api is None:
            import docker

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
                    # Launches, sampling and teardown run many calls at once.
                    max_pool_size=API_CONNECTIONS,
                )
                api.ping()
            except Exception as e:
                raise EngineUnavailable(
                    f"cannot reach Docker Engine at {self.address} ({first_line(e)}): start it "
                    "(`dockerd &`, `systemctl start docker` or `make demo`) or set `host:`"
                ) from None
            self._api = api
        return self._api

    def preflight(self) -> None:
        if not self.address.startswith("unix://"):
            raise UsageError(
                f"DOCKER_HOST={self.address}: only a local engine (unix://) can be measured "
                "for now; unset DOCKER_HOST or set `host: unix:///var/run/docker.sock`"
            )
        self.connect()
        name = self.settings.image
        if not images.is_bench_image(name) and not self.has_image(name):
            raise MissingImage(
                f"image {name!r} is not on {self.address} and bench never pulls (hosts may be "
                "air-gapped): `docker load` it first, or use `image: busybox`"
            )

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> dict[str, Any]:
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
                import_bench_image(api, name)
        img = api.inspect_image(self._image_ref)
        version = api.version()
        components = {c["Name"]: c.get("Version") for c in version.get("Components", [])}
        info = api.info()
        root = Path(info.get("DockerRootDir") or "/var/lib/docker")
        self._storage_dirs = [root / "containers", root / (info.get("Driver") or "overlay2")]
        return {
            "engine": "docker",
            "address": self.address,
            "docker_version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "containerd_version": components.get("containerd"),
            "runc_version": components.get("runc"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "runtime": info.get("DefaultRuntime"),
            "image": self._image_ref,
            "image_id": img["Id"],
            "image_bytes": img.get("Size"),
            "rootfs_sha256": (img.get("Config") or {}).get("Labels", {}).get(images.LABEL_ROOTFS),
        }

    def has_image(self, ref: str) -> bool:
        import docker.errors

        try:
            self._api.inspect_image(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _io(self) -> IOHub:
        with self._lock:
            if self._hub is None:
                self._hub = IOHub("bench-docker-io")
            return self._hub

    def create(self, inst: Instance) -> None:
        api = self.connect()
        s = self.settings
        host_config = api.create_host_config(
            mem_limit=s.memory,
            memswap_limit=s.memory,  # no swap: a memory limit that swaps measures the disk
            nano_cpus=int(s.cpus * 1e9) if s.cpus else None,
            network_mode=s.network,
        )
        created = api.create_container(
            self._image_ref,
            command=s.command,
            name=inst.name,
            labels={
                LABEL_RUN: inst.run_id,
                LABEL_PLATFORM: inst.platform,
                **owner_labels(LABEL_PREFIX),
            },
            host_config=host_config,
            environment=s.env or None,
            detach=True,
            tty=False,
        )
        inst.handle = created["Id"]
        inst.info["container_id"] = created["Id"][:12]
        # Attach before start, so not one byte of output can be missed.
        sock = api.attach_socket(
            inst.handle, params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        )
        raw = getattr(sock, "_sock", sock)
        raw.setblocking(False)
        inst.info["_sock"] = (sock, raw)
        demux = _Demux()

        def on_readable() -> None:
            try:
                data = raw.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                data, err = b"", e
            else:
                err = None
            if not data:
                self._hub.remove(raw)  # type: ignore[union-attr]
                inst.console.close(f"container output ended ({err or 'container exited'})")
                return
            for chunk in demux.feed(data):
                inst.console.feed(chunk)

        self._io().add(raw, on_readable)

    def start(self, inst: Instance) -> None:
        self.connect().start(inst.handle)

    def prefetch(self, insts: list[Instance], host: Host) -> None:
        # Writable-layer sizes of the whole step in one list call (the list endpoint is
        # the SDK's way to ask for sizes; one call per container would cost O(N) each).
        run_ids = {i.run_id for i in insts}
        self._procs = host.processes()
        self._sizes = {}
        for run_id in run_ids:
            for c in self.connect().containers(
                all=True, filters={"label": f"{LABEL_RUN}={run_id}"}, size=True
            ):
                # The engine leaves SizeRw out when the writable layer is empty.
                self._sizes[c["Id"]] = c.get("SizeRw", 0)

    def sample(self, inst: Instance, host: Host) -> dict[str, Any]:
        api = self.connect()
        info = api.inspect_container(inst.handle)
        size_rw = self._sizes.get(inst.handle)
        pid = info["State"].get("Pid") or 0
        # The process view of a container: its containerd-shim (the parent of its init)
        # plus every process inside it.
        procs = host.processes() if self._procs is None else self._procs
        pids = procs.descendants(pid) if pid else []
        shim = procs.parent(pid) if pid else None
        if shim and shim > 1:
            pids.append(shim)
        stats = api.stats(inst.handle, stream=False, one_shot=True)
        mem = stats.get("memory_stats") or {}
        st = mem.get("stats") or {}
        # What `docker stats` should show: usage minus reclaimable page cache
        # (cgroup v1 calls it total_inactive_file, v2 inactive_file).
        inactive = st.get("total_inactive_file", st.get("inactive_file", 0))
        usage = mem.get("usage")
        return {
            "pids": pids,
            "engine_mem_bytes": usage - inactive if usage is not None else None,
            "engine_mem_source": "cgroup usage - inactive_file",
            "disk_writable_bytes": size_rw,
        }

    def storage_dirs(self) -> list[Path]:
        return self._storage_dirs

    def reachable(self) -> bool:
        try:
            return bool(self.connect().ping())
        except Exception:
            return False

    def destroy(self, inst: Instance) -> None:
        import docker.errors

        socks = inst.info.pop("_sock", None)
        if socks:
            if self._hub:
                self._hub.remove(socks[1])
            _close_attach(*socks)
        # By name when the create call never answered (timeout, dropped connection):
        # the engine may have created it all the same, and names are bench's own.
        try:
            self.connect().remove_container(inst.handle or inst.name, force=True, v=True)
        except docker.errors.NotFound:
            pass

    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        api = self.connect()
        label = f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN
        return [
            Leftover(
                "docker",
                "container",
                c["Names"][0].lstrip("/"),
                c["Labels"].get(LABEL_RUN),
                parse_pid(c["Labels"].get(LABEL_OWNER)),
                c["Labels"].get(LABEL_OWNER_HOST),
            )
            for c in api.containers(all=True, filters={"label": label})
        ]

    def remove_leftover(self, leftover: Leftover) -> None:
        import docker.errors

        try:
            self.connect().remove_container(leftover.name, force=True, v=True)
        except docker.errors.NotFound:
            pass

    def close(self) -> None:
        if self._hub:
            self._hub.close()
            self._hub = None
        if self._api is not None:
            self._api.close()
            self._api = None


def _close_attach(sock: Any, raw: Any) -> None:
    """Really close an attach socket: docker-py's SocketIO wrapper holds a reference to
    the socket (and the HTTP response a cycle to it), so closing the raw socket alone
    leaves the descriptor open until a garbage collection."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    with contextlib.suppress(Exception):
        sock.close()
    response = getattr(sock, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


def import_bench_image(api: Any, name: str) -> str:
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
    if labels.get(images.LABEL_ROOTFS) == manifest["rootfs_sha256"]:
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

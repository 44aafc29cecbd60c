"""Native: the baseline every workload figure is a ratio to. A plain host process, no
namespaces but a private mount table, no cgroup limit, no runtime between it and the
host's kernel, running the same bytes as the containers and VMs: the bench image's own
rootfs tar, unpacked, entered with chroot.

An instance is `unshare --mount --propagation private sh -c 'mount proc; bind /dev;
exec chroot ROOT /init'`: the image's init prints the readiness marker and idles, like
in a container. The mounts live in the instance's own mount namespace, so they vanish
with it and a crash leaves none on the host. A workload runs in the same namespace and
root (`nsenter --target INIT --mount --root`). Local only: the tree and the processes
are this machine's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from bench.backends.base import (
    NAME_PREFIX,
    Backend,
    Check,
    ExecResult,
    Instance,
    Leftover,
    Options,
    print_nothing,
)
from bench.machines import images
from bench.model import kinds, owner
from bench.model.errors import ImageError, MissingImage
from bench.model.paths import cache_dir
from bench.model.records import Facts
from bench.model.settings import PlatformBase

if TYPE_CHECKING:
    from bench.machines.host import Host

# Where instances' trees live: on the host's disk, like docker's writable layers, so a
# disk workload writes where a container's would (not to a tmpfs).
STATE = "native"
OWNER_FILE = "bench-owner.json"  # beside the tree: run id and owner, for `bench clean`
# The few device nodes a workload needs (its init and the tools open nothing else). The
# host's whole /dev is not bound in: bench runs as root, and a scenario's fio or
# stress-ng arguments must not reach the host's disks (`--filename=/dev/sda`).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# mount proc, a /dev of those nodes and a /dev/shm inside the instance's own mount
# namespace (all gone with it), then become its init.
ENTER = (
    'mount -t proc proc "$0/proc"'
    ' && mount -t tmpfs -o mode=0755,size=64k,nosuid,noexec bench-dev "$0/dev"'
    f' && for d in {" ".join(DEVICES)}; do : >"$0/dev/$d" && mount --bind "/dev/$d" "$0/dev/$d"'
    " || exit 1; done"
    ' && mkdir "$0/dev/shm" && mount -t tmpfs -o mode=1777,nosuid,nodev bench-shm "$0/dev/shm"'
    ' && exec chroot "$0" /init'
)
STOP_WAIT_S = 5.0
VOLUME = "volume"  # beside the tree (`volume: true`): bound at /bench-volume in it
# The volume's bind, before ENTER's mounts: in the instance's own mount namespace too.
ENTER_VOLUME = 'mount --bind "$0/../volume" "$0/bench-volume" && '


class NativeSettings(PlatformBase):
    backend: Literal["native"] = Field(
        description="a plain host process in a chroot of the bench image (the baseline)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="environment of its init")
    volume: bool = Field(
        False,
        description="a directory bench creates (and removes) on the host's disk, bound at "
        "/bench-volume, for the *-volume workloads",
    )

    @field_validator("image")
    @classmethod
    def _bench_image(cls, v: str) -> str:
        if not images.is_bench_image(v):
            raise ValueError(
                f"native runs a bench image's own tree, not {v!r} "
                f"(known: {', '.join(images.BENCH_IMAGES)})"
            )
        return v


def state_dir() -> Path:
    return cache_dir() / STATE


class NativeBackend(Backend):
    kind = kinds.NATIVE
    Settings = NativeSettings

    def __init__(self, settings: NativeSettings, host: Host | None = None):
        super().__init__(settings, host)
        self.settings: NativeSettings = settings
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_cleanup(cls, options: Options) -> list[Backend]:
        return [cls(NativeSettings(name="clean", backend="native", image="busybox"))]

    @classmethod
    def doctor_checks(cls, options: Options, say: Callable[[str], None]) -> list[Check]:
        missing = [t for t in ("unshare", "nsenter", "chroot") if shutil.which(t) is None]
        if missing:
            return [
                Check(
                    "native",
                    False,
                    f"{', '.join(missing)} not found",
                    "install util-linux and coreutils",
                )
            ]
        return [Check("native", True, "unshare, nsenter and chroot found (runs as root)")]

    def prepare(
        self, *, build_missing: bool = True, say: Callable[[str], None] = print_nothing
    ) -> Facts:
        name = self.settings.image
        if os.geteuid() != 0:
            raise ImageError("the native platform needs root (chroot and mounts): run as root")
        manifest = images.load_manifest(name)
        if manifest is None or not (images.image_dir(name) / "rootfs.tar").is_file():
            if not build_missing:
                raise MissingImage(f"image {name} is not built: run `bench images build {name}`")
            say(f"building the bench image {name} (first use)...")
            manifest = images.ensure_rootfs(name)
        return {
            "engine": "native",
            "image": name,
            "rootfs_sha256": manifest["rootfs_sha256"],
            "kernel": os.uname().release,
        }

    def _dir(self, inst: Instance) -> Path:
        return state_dir() / inst.name

    def create(self, inst: Instance) -> None:
        base = self._dir(inst)
        root = base / "root"
        root.mkdir(parents=True, exist_ok=False)
        (base / OWNER_FILE).write_text(
            json.dumps({"run_id": inst.run_id, "platform": inst.platform, **owner.owner_labels()})
        )
        tar = images.image_dir(self.settings.image) / "rootfs.tar"
        with tarfile.open(tar) as t:
            t.extractall(root, filter="tar")  # bench's own archive: no devices, no escapes
        if self.settings.volume:
            # Under bench's state folder, removed with the tree (destroy, `bench clean`).
            (base / VOLUME).mkdir()
            (root / "bench-volume").mkdir()
            inst.info["volume"] = str(base / VOLUME)
        inst.handle = root

    def start(self, inst: Instance) -> None:
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", **self.settings.env}
        proc = subprocess.Popen(
            [
                *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
                (ENTER_VOLUME if self.settings.volume else "") + ENTER,
                str(inst.handle),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: destroy kills all of it
        )
        with self._lock:
            self._procs[inst.name] = proc
        inst.info["pid"] = proc.pid

        stdout = proc.stdout
        assert stdout is not None  # stdout=PIPE

        def pump() -> None:
            # os.read: whatever has arrived, at once (a buffered read would wait for 64 KiB).
            for chunk in iter(lambda: os.read(stdout.fileno(), 65536), b""):
                inst.console.feed(chunk)
            inst.console.close(f"exited with code {proc.wait()}")

        threading.Thread(target=pump, name=f"bench-native-{inst.name}", daemon=True).start()

    def host_address(self, inst: Instance) -> str | None:
        # Native shares the host's network namespace: its network figure is loopback's.
        return "127.0.0.1"

    def instance_address(self, inst: Instance) -> str | None:
        # Two native instances share the host's network namespace: they meet on loopback.
        return "127.0.0.1"

    def run_in(self, inst: Instance, argv: list[str], timeout_s: float = 60.0) -> ExecResult:
        with self._lock:
            proc = self._procs.get(inst.name)
        if proc is None or proc.poll() is not None:
            raise ImageError(f"{inst.name} is not running")
        # Its mount namespace and root: the same tree, /proc and /dev as its init.
        done = subprocess.run(
            ["nsenter", "--target", str(proc.pid), "--mount", "--root", "--wd", *argv],
            capture_output=True,
            timeout=timeout_s,
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", **self.settings.env},
        )
        return ExecResult(done.returncode, done.stdout, done.stderr)

    def destroy(self, inst: Instance) -> None:
        with self._lock:
            proc = self._procs.pop(inst.name, None)
        if proc is not None:
            _kill_group(proc.pid)
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        base = self._dir(inst)
        if base.exists():
            shutil.rmtree(base, ignore_errors=True)

    def leftovers(self, run_id: str | None = None) -> list[Leftover]:
        out: list[Leftover] = []
        if not state_dir().is_dir():
            return out
        for base in sorted(state_dir().iterdir()):
            if not base.name.startswith(NAME_PREFIX):
                continue
            try:
                labels = json.loads((base / OWNER_FILE).read_text())
            except (OSError, ValueError):
                labels = {}
            found = labels.get("run_id") if isinstance(labels, dict) else None
            if run_id is not None and found != run_id:
                continue
            pid = labels.get("owner_pid") if isinstance(labels, dict) else None
            host = labels.get("owner_host") if isinstance(labels, dict) else None
            out.append(
                Leftover(
                    "native",
                    "file",
                    base.name,
                    found,
                    owner_pid=int(pid) if isinstance(pid, str) and pid.isdigit() else None,
                    owner_host=host if isinstance(host, str) else None,
                )
            )
        return out

    def remove_leftover(self, leftover: Leftover) -> None:
        base = state_dir() / leftover.name
        root = (base / "root").resolve()
        # Its processes: any whose root is the tree (a run that crashed left its init).
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if Path(os.readlink(proc / "root")).resolve() == root:
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                continue
        shutil.rmtree(base, ignore_errors=True)

    def storage_dirs(self) -> list[Path]:
        return [state_dir()]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass  # already gone

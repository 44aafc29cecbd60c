"""A remote engine's machine, read over one SSH connection (paramiko).

Authentication is the user's own SSH set-up: the agent, ~/.ssh/config (HostName, User,
Port, IdentityFile, UserKnownHostsFile, ProxyCommand) and known_hosts. A host whose key
is not known is refused (paramiko's RejectPolicy): bench never trusts a key on its own.

Every read is one exec on the open connection, of a POSIX shell command the remote
runs (no Python is assumed there). The process table is one exec per snapshot with
every process's parent and PSS/USS/RSS, so sampling N instances costs one round trip,
not N. Text is parsed by bench.machines.procfs, as LocalHost's is.
"""

from __future__ import annotations

import functools
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench
from bench.machines import procfs, seccomp
from bench.machines.procfs import ProcessTable
from bench.model import addresses
from bench.model.errors import EngineUnavailable, UsageError
from bench.model.records import Facts

if TYPE_CHECKING:
    import paramiko

CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
# OpenSSH allows 10 sessions per connection by default (MaxSessions): bench's sampling
# threads share fewer than that.
MAX_CHANNELS = 6
# A process_memory() answered from the last processes() snapshot only while it is this
# fresh: the measurer asks right after the snapshot of the same step.
SNAPSHOT_MAX_AGE_S = 30.0

# Marks the start of each file in a multi-file read; never in /proc or /etc text.
_MARK = "--bench-file--"
_ROLLUP_GREP = "grep -H -E '^(" + "|".join(procfs.ROLLUP_FIELDS) + "):'"


class SshError(EngineUnavailable):
    """A remote host that cannot be reached, trusted or logged into."""


@functools.cache
def ssh_host(address: str) -> SshHost:
    """One SshHost (one connection) per SSH address and process."""
    return SshHost(address)


def close_ssh_hosts() -> None:
    """Close every connection ssh_host() opened (at the end of a run, in tests)."""
    for host in _opened:
        host.close()


_opened: list[SshHost] = []


class SshHost:
    """bench.machines.host.Host for a machine reached as ssh://[user@]host[:port]."""

    def __init__(self, address: str, key: str | None = None):
        # Checked where every address enters; again here, as the last step before a host
        # name reaches the user's ProxyCommand (its %h is run by a shell).
        try:
            checked = addresses.check_ssh(address)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.address = address
        self._user, self._host, self._port = checked.user, checked.host, checked.port
        # The name the user gave the machine: a loopback "remote" stays apart from the
        # local host's key (the hostname), as two engines on one machine must.
        self.key = key or checked.hostport
        self._client: paramiko.SSHClient | None = None
        self._lost = False  # a connection dropped; close() allows a new one
        self._lock = threading.Lock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)
        self._memory: dict[int, dict[str, int]] = {}
        self._listed: set[int] = set()  # pids of the last snapshot, readable or not
        self._memory_at = -1e9
        #: Execs run on this connection (each one round trip): tests count them.
        self.exec_count = 0

    # -- connection ------------------------------------------------------------------

    def _connect(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return self._client
                # Dropped (sshd restarted, the session killed): a run must stop on this
                # host rather than read on as if nothing happened. close() allows a new
                # connection (to remove what the run left there).
                self._client.close()
                self._client = None
                self._lost = True
            if self._lost:
                raise SshError(f"{self.address}: SSH connection lost")
            import paramiko

            cfg = _ssh_config(self._host)
            hostname = cfg.get("hostname", self._host)
            port = self._port or int(cfg.get("port", 22))
            user = self._user or cfg.get("user") or _local_user()
            client = paramiko.SSHClient()
            # Known hosts are only read: loaded as "system" keys, paramiko never writes them.
            client.load_system_host_keys()  # ~/.ssh/known_hosts
            for path in ["/etc/ssh/ssh_known_hosts", *cfg.get("userknownhostsfile", "").split()]:
                path = os.path.expanduser(path)
                if os.path.isfile(path):
                    client.load_system_host_keys(path)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            proxy = cfg.get("proxycommand")
            known_as = hostname if port == 22 else f"[{hostname}]:{port}"
            keys = [os.path.expanduser(p) for p in cfg.get("identityfile", [])]
            try:
                client.connect(
                    hostname,
                    port=port,
                    username=user,
                    # paramiko documents "the filename, or list of filenames"; its stubs say str
                    key_filename=keys or None,  # type: ignore[arg-type]
                    timeout=CONNECT_TIMEOUT_S,
                    banner_timeout=CONNECT_TIMEOUT_S,
                    auth_timeout=CONNECT_TIMEOUT_S,
                    sock=paramiko.ProxyCommand(proxy) if proxy else None,
                )
            except paramiko.BadHostKeyException:
                client.close()
                raise SshError(
                    f"{self.address}: the host key of {known_as} differs from known_hosts: "
                    f"refusing it; if the host was reinstalled, `ssh-keygen -R '{known_as}'` "
                    "and accept its new key with `ssh` once"
                ) from None
            except paramiko.AuthenticationException as e:
                client.close()
                raise SshError(
                    f"{self.address}: cannot log in as {user} ({_one_line(e)}): load a key "
                    "into ssh-agent or name it (IdentityFile) in ~/.ssh/config"
                ) from None
            except paramiko.SSHException as e:
                client.close()
                if "not found in known_hosts" in str(e):
                    raise SshError(
                        f"{self.address}: host {known_as} is not in known_hosts and bench "
                        f"never trusts a key by itself: check it and add it (`ssh -p {port} "
                        f"{user}@{hostname} true` once, or ssh-keyscan -p {port} {hostname} "
                        ">> ~/.ssh/known_hosts)"
                    ) from None
                raise SshError(f"{self.address}: SSH failed: {_one_line(e)}") from None
            except (OSError, EOFError) as e:
                client.close()
                raise SshError(
                    f"{self.address}: cannot connect to {hostname}:{port}: {_one_line(e)}"
                ) from None
            self._client = client
            _opened.append(self)
            return client

    def close(self) -> None:
        with self._lock:
            self._lost = False
            if self._client is not None:
                self._client.close()
                self._client = None

    def _exec(self, command: str, timeout: float = READ_TIMEOUT_S) -> tuple[int, str, str]:
        """Run one shell command there (one round trip): exit status, stdout, stderr."""
        import paramiko

        client = self._connect()
        with self._channels:
            self.exec_count += 1
            try:
                transport = client.get_transport()
                if transport is None or not transport.is_active():
                    raise EOFError("the connection is closed")
                chan = transport.open_session(timeout=CONNECT_TIMEOUT_S)
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise SshError(f"{self.address}: SSH connection lost: {_one_line(e)}") from None
            try:
                chan.settimeout(timeout)
                chan.exec_command(command)
                # stdout to its end first, then stderr: paramiko buffers stderr meanwhile
                # (bench's commands write little there).
                out = _read_all(chan.recv)
                err = _read_all(chan.recv_stderr)
                status = chan.recv_exit_status()
                if status == -1 and not transport.is_active():
                    # The connection died under the command: no answer, not an empty one.
                    raise EOFError("the connection closed during a command")
            except TimeoutError:
                raise subprocess.TimeoutExpired(command, timeout) from None
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise SshError(f"{self.address}: SSH connection lost: {_one_line(e)}") from None
            finally:
                chan.close()
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    def _sh(self, script: str, timeout: float = READ_TIMEOUT_S) -> tuple[int, str, str]:
        """A POSIX sh script, whatever the remote user's login shell."""
        return self._exec("sh -c " + shlex.quote(script), timeout)

    def _read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Several files in one round trip; None for one that cannot be read."""
        # The newline after each file keeps the next mark at a line's start (a pid file
        # may have none).
        script = "; ".join(
            f"echo {_MARK}{q}; cat {q} 2>/dev/null && echo || echo {_MARK}"
            for q in map(shlex.quote, paths)
        )
        return _split_files(self._sh(script)[1], paths)

    # -- facts -----------------------------------------------------------------------

    def describe(self) -> Facts:
        files = self._read_files(
            [
                "/proc/sys/kernel/hostname",
                "/proc/sys/kernel/osrelease",
                "/proc/cpuinfo",
                "/proc/meminfo",
                "/proc/loadavg",
                "/etc/os-release",
            ]
        )
        _, probes, _ = self._sh(
            "uname -m; test -e /dev/kvm && echo kvm; "
            "test -e /sys/fs/cgroup/cgroup.controllers && echo cgroup2; true"
        )
        words = probes.split()
        cpuinfo = files["/proc/cpuinfo"] or ""
        logical, physical = procfs.parse_cpu_counts(cpuinfo)
        meminfo = procfs.parse_meminfo(files["/proc/meminfo"] or "")
        return {
            "hostname": (files["/proc/sys/kernel/hostname"] or "").strip() or self.key,
            "cpu_model": procfs.parse_cpu_model(cpuinfo) or "unknown",
            "cpu_cores": logical,
            "cpu_physical_cores": physical,
            "mem_total_bytes": meminfo.get("MemTotal"),
            "mem_available_bytes": meminfo.get("MemAvailable"),
            "kernel": (files["/proc/sys/kernel/osrelease"] or "").strip(),
            "os": procfs.parse_os_release(files["/etc/os-release"] or "") or "Linux",
            "arch": words[0] if words else None,
            "kvm_device": "kvm" in words,
            "load_avg_1m": procfs.parse_loadavg(files["/proc/loadavg"] or "0"),
            "cgroup_version": 2 if "cgroup2" in words else 1,
            # bench itself runs here, on the controller.
            "python": sys.version.split()[0],
            "bench_version": bench.__version__,
            "ssh_address": self.address,
        }

    def _meminfo(self) -> dict[str, int]:
        return procfs.parse_meminfo(self._read_files(["/proc/meminfo"])["/proc/meminfo"] or "")

    def mem_total_bytes(self) -> int:
        return self._meminfo_field("MemTotal")

    def mem_available_bytes(self) -> int:
        return self._meminfo_field("MemAvailable")

    def _meminfo_field(self, name: str) -> int:
        value = self._meminfo().get(name)
        if value is None:
            raise SshError(f"{self.address}: no {name} in /proc/meminfo there")
        return value

    def load_avg_1m(self) -> float:
        return procfs.parse_loadavg(self._read_files(["/proc/loadavg"])["/proc/loadavg"] or "0")

    def memory_facts(self) -> Facts:
        ksm = [f"/sys/kernel/mm/ksm/{n}" for n in ("run", "pages_shared", "pages_sharing")]
        thp = "/sys/kernel/mm/transparent_hugepage/enabled"
        files = self._read_files([*ksm, thp, "/proc/loadavg"])
        facts: Facts = {f"ksm_{Path(p).name}": procfs.parse_int(files[p]) for p in ksm}
        facts["thp_mode"] = procfs.parse_thp_mode((files[thp] or "").strip() or None)
        facts["load_avg_1m"] = procfs.parse_loadavg(files["/proc/loadavg"] or "0")
        return facts

    def drop_caches(self) -> bool:
        return self._sh("sync && echo 3 > /proc/sys/vm/drop_caches")[0] == 0

    def rtt_s(self, samples: int = 5) -> float:
        """Median of a few no-op round trips on the open connection (an SSH keepalive
        request the server answers itself): the network's round-trip time.

        Not an exec of `true`: that also times the remote login shell's start-up (its
        rc files: 0.3 s here for root's pyenv set-up), which says nothing about how
        late bench sees a console line. What one read costs is `exec_s()`.
        """
        import paramiko

        transport = self._connect().get_transport()
        if transport is None:
            raise SshError(f"{self.address}: SSH connection lost")
        times = []
        try:
            for _ in range(samples):
                t0 = time.perf_counter()
                transport.global_request("keepalive@openssh.com", wait=True)
                times.append(time.perf_counter() - t0)
        except (paramiko.SSHException, OSError, EOFError, AttributeError) as e:
            raise SshError(f"{self.address}: SSH connection lost: {_one_line(e)}") from None
        return statistics.median(times)

    def exec_s(self, samples: int = 3) -> float:
        """Median time of a no-op exec there (channel, remote shell, exit status): the
        cost of one read of this host."""
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            self._exec("true")
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    # -- processes -------------------------------------------------------------------

    def processes(self) -> ProcessTable:
        """Every process's parent and PSS/USS/RSS, in one round trip; process_memory()
        then answers from it."""
        script = (
            "cd /proc || exit 1; cat [0-9]*/stat 2>/dev/null; "
            f"echo {_MARK}; {_ROLLUP_GREP} /proc/[0-9]*/smaps_rollup 2>/dev/null; true"
        )
        out = self._sh(script)[1]
        stats, _, rollups = out.partition(f"{_MARK}\n")
        parents = procfs.parse_stat_parents(stats)
        self._memory = procfs.parse_rollups_by_path(rollups)
        self._listed = set(parents)
        self._memory_at = time.monotonic()
        return ProcessTable(parents)

    def process_memory(self, pids: list[int]) -> dict[str, int] | None:
        """PSS, USS and RSS summed over these processes: from the last processes()
        snapshot when it is fresh and listed them all (kernel threads and others' processes
        have no readable memory there either), else read in one round trip."""
        fresh = time.monotonic() - self._memory_at < SNAPSHOT_MAX_AGE_S
        if not (fresh and self._listed.issuperset(pids)):
            paths = " ".join(f"/proc/{int(p)}/smaps_rollup" for p in pids)
            if not paths:
                return None
            out = self._sh(f"{_ROLLUP_GREP} {paths} 2>/dev/null; true")[1]
            return procfs.sum_memory(procfs.parse_rollups_by_path(out), pids)
        return procfs.sum_memory(self._memory, pids)

    def read_pidfile(self, path: str) -> int | None:
        return procfs.parse_int(self._read_files([path])[path])

    # -- files -----------------------------------------------------------------------

    def read_files(self, paths: Sequence[str]) -> dict[str, str | None]:
        return self._read_files(paths)

    def seccomp_programs(self, pid: int) -> list[list[seccomp.Instruction]]:
        # ptrace needs a process of its own on that machine: bench runs none there.
        raise seccomp.FilterError("its filters are read by ptrace, on bench's own machine only")

    def read_links(self, paths: Sequence[str]) -> dict[str, str | None]:
        """Several links' targets in one round trip; None for one that cannot be read."""
        if not paths:
            return {}
        script = "; ".join(
            f"echo {_MARK}{q}; readlink {q} 2>/dev/null || echo {_MARK}"
            for q in map(shlex.quote, paths)
        )
        files = _split_files(self._sh(script)[1], paths)
        return {p: (t.strip() or None) if t is not None else None for p, t in files.items()}

    def allocated_bytes(self, path: str | Path) -> int:
        """Disk blocks used under path, by `du -s -x` there (each inode once)."""
        status, out, _ = self._sh(f"du -s -x -k -- {shlex.quote(str(path))} 2>/dev/null")
        words = out.split()
        return int(words[0]) * 1024 if status == 0 and words and words[0].isdigit() else 0

    def snapshot_entries(self, dirs: list[Path]) -> dict[Path, set[str]]:
        listed = self._list_dirs(dirs)
        return {d: set(listed.get(str(d), [])) for d in dirs}

    def new_entries_bytes(self, before: dict[Path, set[str]]) -> int:
        """Allocated bytes of the entries that appeared since `before`: one round trip to
        list, one to `du` only the new ones (an engine's storage may be gigabytes)."""
        if not before:
            return 0
        listed = self._list_dirs(list(before))
        new = [
            str(d / name)
            for d, names in before.items()
            for name in listed.get(str(d), [])
            if name not in names
        ]
        if not new:
            return 0
        args = " ".join(shlex.quote(p) for p in new)
        _, out, _ = self._sh(f"du -s -x -k -c -- {args} 2>/dev/null; true")
        for line in reversed(out.splitlines()):  # the last line is the total
            words = line.split()
            if words and words[0].isdigit():
                return int(words[0]) * 1024
        return 0

    def _list_dirs(self, dirs: Sequence[Path | str]) -> dict[str, list[str]]:
        script = "; ".join(
            f"echo {_MARK}{shlex.quote(str(d))}; ls -A1 -- {shlex.quote(str(d))} 2>/dev/null"
            for d in dirs
        )
        files = _split_files(self._sh(script)[1], [str(d) for d in dirs])
        return {d: sorted(n for n in (t or "").splitlines() if n) for d, t in files.items()}

    def is_file(self, path: str | Path) -> bool:
        return self._sh(f"test -f {shlex.quote(str(path))}")[0] == 0

    def is_dir(self, path: str | Path) -> bool:
        return self._sh(f"test -d {shlex.quote(str(path))}")[0] == 0

    def list_dir(self, path: str | Path) -> list[str]:
        return self._list_dirs([path])[str(path)]

    def make_dirs(self, path: str | Path) -> None:
        status, _, err = self._sh(f"mkdir -p -- {shlex.quote(str(path))}")
        if status != 0:
            raise OSError(f"{self.key}: mkdir -p {path}: {err.strip()}")

    def remove_file(self, path: str | Path) -> None:
        status, _, err = self._sh(f"rm -f -- {shlex.quote(str(path))}")
        if status != 0:
            raise OSError(f"{self.key}: rm -f {path}: {err.strip()}")

    def remove_empty_dir(self, path: str | Path) -> None:
        self._sh(f"rmdir -- {shlex.quote(str(path))} 2>/dev/null; true")

    def ensure_copy(self, local: Path, path: str | Path) -> bool:
        """Make `path` there a copy of the local file `local` (SFTP), unless it already is
        one (same sha256); True when it copied."""
        digest = _sha256(local)
        quoted = shlex.quote(str(path))
        status, out, _ = self._sh(f"sha256sum -- {quoted} 2>/dev/null")
        if status == 0 and out.split()[:1] == [digest]:
            return False
        self.make_dirs(Path(path).parent)
        tmp = f"{path}.bench-{os.getpid()}"
        import paramiko

        try:
            with self._channels:
                sftp = self._connect().open_sftp()
                try:
                    sftp.put(str(local), tmp)
                    sftp.posix_rename(tmp, str(path))
                finally:
                    sftp.close()
        except (paramiko.SSHException, OSError, EOFError) as e:
            self._sh(f"rm -f -- {shlex.quote(tmp)}; true")
            raise SshError(
                f"{self.address}: cannot copy {local} to {path}: {_one_line(e)}"
            ) from None
        return True

    def run(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command there; a missing program is returncode 127 (the remote shell's)."""
        status, out, err = self._exec(shlex.join(argv), timeout)
        return subprocess.CompletedProcess(list(argv), status, out, err)


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# bench's reads are /proc files and process tables: a few MiB at most on a host with
# thousands of processes. A remote host that sends more is not answering bench's command.
MAX_READ_BYTES = 64 * 2**20


def _read_all(recv: Callable[[int], bytes]) -> bytes:
    chunks, size = [], 0
    while data := recv(65536):
        size += len(data)
        if size > MAX_READ_BYTES:
            raise SshError(f"a remote command's output passed {MAX_READ_BYTES // 2**20} MiB")
        chunks.append(data)
    return b"".join(chunks)


def _split_files(text: str, paths: Sequence[str]) -> dict[str, str | None]:
    """Output of `echo MARKpath; cat path && echo || echo MARK` per path, back into
    files: None for a path whose read failed (a bare MARK follows it) or is absent."""
    out: dict[str, str | None] = dict.fromkeys(paths)
    current: str | None = None
    body: list[str] = []
    for line in [*text.splitlines(), _MARK]:
        if not line.startswith(_MARK):
            if current is not None:
                body.append(line)
            continue
        name = line[len(_MARK) :]
        if current is not None:
            # A bare mark right after a path: its cat failed.
            out[current] = None if not name and not body else "\n".join(body)
        current, body = name or None, []
    return out


def _ssh_config(host: str) -> dict[str, Any]:
    """~/.ssh/config's settings for this host (paramiko's parser; {} without a file).

    Any: paramiko's SSHConfigDict, whose values are strings or, for a few keys
    (identityfile), lists of them."""
    import paramiko

    path = Path("~/.ssh/config").expanduser()
    if not path.is_file():
        return {}
    return dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]

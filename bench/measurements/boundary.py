"""The boundary: what stands between a running instance and its host, as facts read
from that instance, never assumed from its platform's kind.

For each instance, once it is ready, its backend says where to look (a BoundaryView:
the host processes that hold it, by role, and a VM's devices) and this measurement
reads the rest on the engine's machine, through its Host:

- whose kernel answers its system calls: the kernel release the instance reported at
  readiness (`kernel=` in its marker, from `uname -r` inside it) against the host's
  (/proc/sys/kernel/osrelease), and which host process stands between (a sandbox's,
  a VMM's);
- for each host process: its command (argv[0] of /proc/PID/cmdline), its user
  (effective uid of /proc/PID/status, named from the host's /etc/passwd), seccomp mode
  and filter count (`Seccomp`, `Seccomp_filters`), effective capabilities (`CapEff`),
  `NoNewPrivs`, a tracer (`TracerPid`: gVisor's ptrace platform traces its stubs), the
  namespaces it does not share with the host (/proc/PID/ns/* against /proc/1/ns/*, or
  against bench's own where /proc/1's cannot be read) and its user namespace's uid map;
- under a sandbox: its first child process (gVisor's stubs, where the instance's code
  runs; /proc/PID/task/*/children), with the same facts: who traces it, its seccomp;
- a VM's devices, as its VMM (QMP) or libvirt (the domain XML) lists them.

Stored per sample under `extras["boundary"]`, one nested mapping (documented in
`Boundary` below): facts, not numbers (no unit, nothing to summarise or compare), and
about a dozen of them per process: declared Sample fields would add a column per fact
to every run read by columns. A fact bench could not read is absent from the facts and
present in `not_read` with why. Samples stored before this measurement existed have no
mapping: the table says so.

`boundary_table` / `boundary_markdown` turn a run's samples into a platform x fact
table.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from bench.machines import seccomp
from bench.measurements.base import Found, InstanceMeasurement, StepContext
from bench.model.errors import first_line

if TYPE_CHECKING:
    from bench.backends.base import Instance
    from bench.machines.host import Host
    from bench.model.records import Facts

SCHEMA = 1
#: Namespaces compared with the host's (the *_for_children links are left out: they
#: name what a child would get, not where the process is).
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}
#: Linux capability numbers (include/uapi/linux/capability.h), for CapEff's bits.
CAPABILITIES = (
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
)
#: Host programs whose name says whose kernel they are (argv[0] as read).
KNOWN_KERNELS = {"runsc-sandbox": "gVisor's Sentry"}
ROLES = ("container", "sandbox", "vmm")  # the one a table row describes, first found
# Besides: "workload", a sandbox's child that runs the instance's code (gVisor's stubs).
ROLE_WORDS = {"container": "container", "sandbox": "sandbox", "vmm": "VMM"}
STATUS_FIELDS = ("Name", "Uid", "Seccomp", "Seccomp_filters", "CapEff", "NoNewPrivs", "TracerPid")


class ProcessFacts(BaseModel):
    """One host process of an instance, as read from its /proc."""

    model_config = ConfigDict(extra="allow")

    pid: int
    command: str | None = None  # argv[0]'s base name, else its comm (status Name)
    uid: int | None = None  # effective
    user: str | None = None  # uid's name in the host's /etc/passwd
    seccomp: str | None = None  # disabled, strict or filter
    seccomp_filters: int | None = None
    # How many x86-64 system call numbers its filters may allow (bench.machines.seccomp).
    seccomp_syscalls_allowed: int | None = None
    cap_eff: str | None = None  # hex, as the kernel writes it
    capabilities: list[str] | None = None  # CapEff's names
    no_new_privs: bool | None = None
    tracer_pid: int | None = None
    namespaces_not_shared: list[str] | None = None
    uid_map: list[list[int]] | None = None  # [inside, outside, count] lines


class Boundary(BaseModel):
    """What `extras["boundary"]` of a sample holds (schema 1)."""

    model_config = ConfigDict(extra="allow")

    schema_: int = Field(SCHEMA, alias="schema")
    # "host kernel", "guest kernel", "sandbox kernel: <command>", or absent (not_read).
    syscalls_by: str | None = None
    instance_kernel: str | None = None  # the release the instance reported
    host_kernel: str | None = None
    ns_reference: str | None = None  # whose namespaces "not shared" is against
    processes: dict[str, ProcessFacts] = Field(default_factory=dict)  # by role
    devices: dict[str, int] | None = None
    devices_source: str | None = None
    # Fact ("syscalls_by", "devices", "pids", "<role>.<fact>") -> why it was not read.
    not_read: dict[str, str] = Field(default_factory=dict)
    read_s: float | None = None  # bench's time reading all of it

    def row(self) -> dict[str, JsonValue]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- parsing /proc text (pure) ----------------------------------------------------------


def parse_status(text: str | None) -> dict[str, str]:
    """The STATUS_FIELDS of a /proc/PID/status text, as written (garbage lines and
    other fields skipped)."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in STATUS_FIELDS and name not in out:
            out[name] = rest.strip()
    return out


def _int(text: str | None, base: int = 10) -> int | None:
    try:
        return int(text, base) if text is not None else None
    except ValueError:
        return None


def parse_effective_uid(uid_line: str | None) -> int | None:
    """`Uid:` lists real, effective, saved and filesystem uids: the effective one."""
    words = (uid_line or "").split()
    return _int(words[1]) if len(words) >= 2 else None


def capability_names(cap_hex: str | None) -> list[str] | None:
    """The names of the bits set in a CapEff mask (cap_N for a bit without a name)."""
    mask = _int(cap_hex, 16)
    if mask is None or mask < 0:
        return None
    names = CAPABILITIES
    return [
        names[b] if b < len(names) else f"cap_{b}"
        for b in range(mask.bit_length())
        if mask >> b & 1
    ]


def _status_why(base: str, line: str, status: Mapping[str, str]) -> str:
    """Why a /proc/PID/status fact was not read: its line is missing, or not a value."""
    if line not in status:
        old = " (Linux before 5.9 does not write it)" if line == "Seccomp_filters" else ""
        return f"no {line} line in {base}/status{old}"
    return f"{line} in {base}/status is not what the kernel writes: {status[line][:40]!r}"


def parse_ns_link(target: str | None) -> tuple[str, int] | None:
    """`net:[4026531833]` -> ("net", 4026531833)."""
    if not target:
        return None
    kind, sep, rest = target.partition(":[")
    inode = _int(rest[:-1]) if sep and rest.endswith("]") else None
    return (kind, inode) if inode is not None else None


def parse_id_map(text: str | None) -> list[list[int]] | None:
    """/proc/PID/uid_map lines (`inside outside count`); None if any line is not."""
    if text is None:
        return None
    rows = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        numbers = [_int(w) for w in words]
        if len(numbers) != 3 or any(n is None or n < 0 for n in numbers):
            return None
        rows.append([int(n) for n in numbers if n is not None])
    return rows or None


def parse_passwd(text: str | None) -> dict[int, str]:
    """uid -> user name from /etc/passwd text."""
    out: dict[int, str] = {}
    for line in (text or "").splitlines():
        parts = line.split(":")
        uid = _int(parts[2]) if len(parts) >= 3 else None
        if uid is not None and parts[0] and uid not in out:
            out[uid] = parts[0]
    return out


def command_of(cmdline: str | None) -> str | None:
    """argv[0]'s base name from /proc/PID/cmdline text (NUL-separated); None when it is
    not text (bytes the host could not decode arrive as U+FFFD: not a name to show)."""
    first = (cmdline or "").split("\0", 1)[0].strip()
    if "\ufffd" in first:
        return None
    return first.rsplit("/", 1)[-1] or None if first else None


def is_pid(value: object) -> bool:
    """A pid from an engine is used in a path only as a positive int (never a str, a
    bool or a float: nothing an engine says becomes part of a path as text)."""
    return type(value) is int and value > 0


# -- reading, through the engine's Host ---------------------------------------------------


def _files(host: Host, paths: Sequence[str]) -> dict[str, str | None]:
    """host.read_files, one file at a time if the batch fails (a file that is not text:
    that one is None, the others still read)."""
    try:
        return host.read_files(paths)
    except Exception:
        out: dict[str, str | None] = {}
        for p in paths:
            try:
                out[p] = host.read_files([p]).get(p)
            except Exception:
                out[p] = None
        return out


def _links(host: Host, paths: Sequence[str]) -> dict[str, str | None]:
    try:
        return host.read_links(paths)
    except Exception:
        return dict.fromkeys(paths)


def reference_namespaces(host: Host) -> tuple[dict[str, int], str]:
    """The host's namespaces (its init's, /proc/1), or where those cannot be read (a
    process in a sandbox, a non-root user) the reading process's own; and which."""
    for who, label in (
        ("1", "/proc/1 (the host's init)"),
        ("self", "bench's own (/proc/1's unreadable)"),
    ):
        links = _links(host, [f"/proc/{who}/ns/{ns}" for ns in NAMESPACES])
        found = {}
        for target in links.values():
            parsed = parse_ns_link(target)
            if parsed:
                found[parsed[0]] = parsed[1]
        if found:
            return found, label
    return {}, "none readable"


SECCOMP_CACHE = "seccomp-count.json"  # program hash -> how many calls it may allow


@functools.lru_cache(maxsize=64)
def _count_allowed(programs: tuple[tuple[seccomp.Instruction, ...], ...]) -> int:
    """Every instance of a platform carries the same programs, and their evaluation costs
    about 0.2 s for Docker's default profile (500 call numbers through 1,000
    instructions): evaluated once per machine (bench's probe cache, keyed by the
    programs' hash: a pure function of them), read (ptrace, milliseconds) per instance."""
    from bench.backends.probe_cache import ProbeCache, ProbeResult

    key = hashlib.sha256(json.dumps(programs).encode()).hexdigest()
    cache = ProbeCache.named(SECCOMP_CACHE)
    known = cache.get(key)
    if known is not None and known.ok and known.detail.isdigit():
        return int(known.detail)
    count = len(seccomp.allowed_syscalls(programs))
    cache.put(key, ProbeResult(True, str(count)))
    return count


def syscalls_allowed(host: Host, pid: int) -> tuple[int | None, str]:
    """How many host system calls process `pid`'s seccomp filters may allow, or None and
    why not (its Host copies the programs out: ptrace, on bench's own machine, as root)."""
    try:
        programs = host.seccomp_programs(pid)
        return _count_allowed(tuple(tuple(p) for p in programs)), ""
    except (seccomp.FilterError, OSError) as e:
        return None, first_line(e)


def read_process(
    host: Host, role: str, pid: int, reference: Mapping[str, int], users: Mapping[int, str]
) -> tuple[ProcessFacts, dict[str, str]]:
    """One host process's facts, and each fact not read with why."""
    base = f"/proc/{pid}"
    files = _files(host, [f"{base}/status", f"{base}/cmdline", f"{base}/uid_map"])
    links = _links(host, [f"{base}/ns/{ns}" for ns in NAMESPACES])
    status_text = files.get(f"{base}/status")
    missing: dict[str, str] = {}
    facts: dict[str, object] = {"pid": pid}  # validated as ProcessFacts below
    if status_text is None:
        why = f"{base}/status unreadable (the process is gone, or not bench's to read)"
        for f in ("uid", "seccomp", "seccomp_filters", "cap_eff", "no_new_privs", "tracer_pid"):
            missing[f"{role}.{f}"] = why
    else:
        status = parse_status(status_text)
        facts["uid"] = parse_effective_uid(status.get("Uid"))
        mode = _int(status.get("Seccomp"))
        facts["seccomp"] = SECCOMP_MODES.get(mode) if mode is not None else None
        facts["seccomp_filters"] = _int(status.get("Seccomp_filters"))
        cap = status.get("CapEff")
        facts["capabilities"] = capability_names(cap)
        facts["cap_eff"] = cap if facts["capabilities"] is not None else None
        nnp = status.get("NoNewPrivs")
        facts["no_new_privs"] = {"0": False, "1": True}.get(nnp or "")
        facts["tracer_pid"] = _int(status.get("TracerPid"))
        for f, line in (
            ("uid", "Uid"),
            ("seccomp", "Seccomp"),
            ("seccomp_filters", "Seccomp_filters"),
            ("cap_eff", "CapEff"),
            ("no_new_privs", "NoNewPrivs"),
            ("tracer_pid", "TracerPid"),
        ):
            if facts[f] is None:
                missing[f"{role}.{f}"] = _status_why(base, line, status)
    if facts.get("seccomp") == "filter" and role in ROLES:
        allowed, why = syscalls_allowed(host, pid)
        if allowed is None:
            missing[f"{role}.seccomp_syscalls_allowed"] = why
        else:
            facts["seccomp_syscalls_allowed"] = allowed
    uid = facts.get("uid")
    if isinstance(uid, int):  # parse_effective_uid's: an int, or None
        facts["user"] = users.get(uid)
        if facts["user"] is None:
            missing[f"{role}.user"] = f"uid {uid} is not in the host's /etc/passwd"
    # argv[0]; a process that cleared its command line (gVisor's stubs) by its comm.
    name = parse_status(status_text).get("Name") if status_text is not None else None
    facts["command"] = command_of(files.get(f"{base}/cmdline")) or name or None
    if facts["command"] is None:
        missing[f"{role}.command"] = f"{base}/cmdline and the status Name unreadable or empty"
    facts["uid_map"] = parse_id_map(files.get(f"{base}/uid_map"))
    if facts["uid_map"] is None:
        missing[f"{role}.uid_map"] = f"{base}/uid_map unreadable or not id-map lines"
    own = {}
    for target in links.values():
        parsed = parse_ns_link(target)
        if parsed:
            own[parsed[0]] = parsed[1]
    compared = [ns for ns in NAMESPACES if ns in own and ns in reference]
    if compared:
        facts["namespaces_not_shared"] = [ns for ns in compared if own[ns] != reference[ns]]
        unread = [ns for ns in NAMESPACES if ns not in compared]
        if unread:
            missing[f"{role}.namespaces:" + ",".join(unread)] = (
                "link unreadable here or on the host"
            )
    else:
        missing[f"{role}.namespaces_not_shared"] = (
            f"{base}/ns/* unreadable" if not own else "the host's namespaces are unreadable"
        )
    return ProcessFacts.model_validate({k: v for k, v in facts.items() if v is not None}), missing


def children(host: Host, pid: int) -> list[int]:
    """The child processes of `pid`, from each of its threads' children file
    (/proc/PID/task/TID/children, Linux 3.5+ with CONFIG_PROC_CHILDREN), sorted."""
    tasks = [t for t in host.list_dir(f"/proc/{pid}/task") if t.isdigit()]
    files = _files(host, [f"/proc/{pid}/task/{t}/children" for t in tasks])
    found = {int(w) for text in files.values() for w in (text or "").split() if w.isdigit()}
    return sorted(p for p in found if p > 0)


def syscalls_by(
    instance_kernel: str | None, host_kernel: str | None, processes: Mapping[str, ProcessFacts]
) -> tuple[str | None, str | None]:
    """Whose kernel answers the instance's system calls, and why not read if unknown.

    The instance's own `uname -r` (its marker) is the reading: the host's release means
    the host kernel serves it; another release means a kernel of its own, named by the
    host process that holds it (a VMM's guest kernel, a sandbox's user-space kernel)."""
    if not instance_kernel:
        return None, "the instance reported no kernel release at readiness"
    if not host_kernel:
        return None, "the host's kernel release (/proc/sys/kernel/osrelease) is unreadable"
    if "vmm" in processes:
        same = " (the host's release)" if instance_kernel == host_kernel else ""
        return f"guest kernel {instance_kernel}{same}", None
    if instance_kernel == host_kernel:
        return f"host kernel {host_kernel}", None
    sandbox = processes.get("sandbox")
    if sandbox is not None:
        cmd = sandbox.command or f"pid {sandbox.pid}"
        name = KNOWN_KERNELS.get(cmd, "sandbox kernel")
        return f"{name} ({cmd}), reports {instance_kernel}", None
    return f"not the host's: reports {instance_kernel} (host {host_kernel})", None


class BoundaryFacts(InstanceMeasurement):
    """The boundary of each instance (see the module's doc), read once it is ready.

    Per instance, not per step: reading it costs about a millisecond locally (a few
    /proc files and links, plus one engine call for the pid), far below a launch, and
    instances of one step could differ (a runtime the engine chose per instance)."""

    fields = ("boundary",)
    # Not a Sample field: one nested mapping under extras (see the module's doc).
    nested = frozenset({"boundary"})
    when = "after_ready"
    sampling = True

    def __init__(self, name: str):
        super().__init__(name)
        # Per engine machine: its namespaces, users and kernel release (read once a step).
        self._host_facts: dict[str, tuple[dict[str, int], str, dict[int, str], str | None]] = {}

    def prepare(self, ctx: StepContext) -> None:
        host = ctx.host
        reference, label = reference_namespaces(host)
        files = _files(host, ["/etc/passwd", "/proc/sys/kernel/osrelease"])
        kernel = (files.get("/proc/sys/kernel/osrelease") or "").strip() or None
        self._host_facts[host.key] = (
            reference,
            label,
            parse_passwd(files.get("/etc/passwd")),
            kernel,
        )

    def sample(self, ctx: StepContext, inst: Instance, found: Found) -> Facts:
        start = ctx.clock.now()  # the runner's clock: virtual in tests
        host = ctx.host
        if host.key not in self._host_facts:
            self.prepare(ctx)
        reference, label, users, host_kernel = self._host_facts[host.key]
        not_read: dict[str, str] = {}
        try:
            view = ctx.backend.boundary_view(inst, host)
        except Exception as e:
            view = None
            not_read["pids"] = not_read["devices"] = f"the engine did not say: {first_line(e)}"
        processes: dict[str, ProcessFacts] = {}
        if view is not None:
            not_read.update(view.missing)
            for role, pid in view.pids.items():
                if not is_pid(pid):
                    not_read[f"{role}.pid"] = (
                        f"the backend gave {type(pid).__name__} {str(pid)[:20]!r}, not a pid"
                    )
                    continue
                facts, missing = read_process(host, role, pid, reference, users)
                processes[role] = facts
                not_read.update(missing)
            if not view.pids and "pids" not in not_read:
                not_read["pids"] = "the backend named no host process"
        sandbox = processes.get("sandbox")
        if sandbox is not None:
            # The host processes a sandbox kernel runs the instance's code in (gVisor's
            # ptrace and systrap stubs are its children; its KVM platform has none).
            kids = children(host, sandbox.pid)
            if kids:
                facts, missing = read_process(host, "workload", kids[0], reference, users)
                processes["workload"] = facts
                not_read.update(missing)
            else:
                not_read["workload"] = f"the sandbox's process (pid {sandbox.pid}) has no child"
        kernel = inst.console.fields.get("kernel") or None
        by, why = syscalls_by(kernel, host_kernel, processes)
        if why:
            not_read["syscalls_by"] = why
        devices = view.devices if view is not None else None
        if devices is None and "devices" not in not_read:
            not_read["devices"] = "the backend lists no devices"
        out = Boundary(
            syscalls_by=by,
            instance_kernel=kernel,
            host_kernel=host_kernel,
            ns_reference=label,
            processes=processes,
            devices=devices,
            devices_source=view.devices_source
            if view is not None and devices is not None
            else None,
            not_read=not_read,
            read_s=round(ctx.clock.now() - start, 6),
        )
        return {"boundary": out.row()}


# -- the boundary table ------------------------------------------------------------------

COLUMNS = (
    "platform",
    "instances",
    "system calls answered by",
    "host process",
    "user",
    "seccomp",
    "capabilities",
    "no_new_privs",
    "namespaces not shared with the host",
    "user namespace (uid map)",
    "VM devices",
)


def _not_read(reason: str | None) -> str:
    return f"not read ({reason or 'no reason stored'})"


def _role(b: Boundary) -> str | None:
    """The host process a platform's row describes: the one between the instance and
    the host kernel (the container's own, a sandbox's, a VMM)."""
    return next((r for r in ROLES if r in b.processes), None)


def _process_cells(b: Boundary) -> dict[str, str]:
    role = _role(b)
    if role is None:
        why = b.not_read.get("pids") or next(
            (v for k, v in b.not_read.items() if k.endswith(".pid")), None
        )
        return {c: _not_read(why) for c in COLUMNS[3:10]}
    p = b.processes[role]

    def missing(fact: str) -> str:
        return _not_read(b.not_read.get(f"{role}.{fact}"))

    seccomp = missing("seccomp")
    if p.seccomp is not None:
        filters = (
            f", {p.seccomp_filters} filter{'s' if p.seccomp_filters != 1 else ''}"
            if p.seccomp_filters is not None
            else f", filters {missing('seccomp_filters')}"
        )
        seccomp = p.seccomp + (filters if p.seccomp == "filter" or p.seccomp_filters else "")
        if p.seccomp_syscalls_allowed is not None:
            seccomp += f": {p.seccomp_syscalls_allowed} host system calls allowed"
        elif f"{role}.seccomp_syscalls_allowed" in b.not_read:  # (a run before: neither)
            seccomp += f": calls allowed {missing('seccomp_syscalls_allowed')}"
    caps = missing("cap_eff")
    if p.capabilities is not None:
        caps = f"{len(p.capabilities)} ({p.cap_eff})"
        if 0 < len(p.capabilities) <= 4:
            caps += ": " + ", ".join(p.capabilities)
    ns = missing("namespaces_not_shared")
    if p.namespaces_not_shared is not None:
        ns = " ".join(p.namespaces_not_shared) or "none"
        unread = [k.split(":", 1)[1] for k in b.not_read if k.startswith(f"{role}.namespaces:")]
        if unread:
            ns += f" (not read: {' '.join(unread)})"
    uid_map = missing("uid_map")
    if p.uid_map is not None:
        lines = ["{} {} {}".format(*row) for row in p.uid_map]
        identity = p.uid_map == [[0, 0, 4294967295]]
        uid_map = "the host's (0 0 4294967295)" if identity else "; ".join(lines)
    tracer = f", traced by pid {p.tracer_pid}" if p.tracer_pid else ""
    w = b.processes.get("workload") if role == "sandbox" else None
    if w is not None:
        by = "it" if w.tracer_pid == p.pid else f"pid {w.tracer_pid}" if w.tracer_pid else None
        tracer += (
            f"; the instance's code runs in its child {w.command or 'pid ' + str(w.pid)}"
            + (f", traced by {by}" if by else "")
            + (f", seccomp {w.seccomp}" if w.seccomp else "")
        )
    user = p.user or (f"uid {p.uid}" if p.uid is not None else missing("uid"))
    return {
        "host process": f"{ROLE_WORDS[role]}: {p.command or missing('command')}{tracer}",
        "user": user,
        "seccomp": seccomp,
        "capabilities": caps,
        "no_new_privs": missing("no_new_privs")
        if p.no_new_privs is None
        else ("yes" if p.no_new_privs else "no"),
        "namespaces not shared with the host": ns,
        "user namespace (uid map)": uid_map,
    }


def _devices_cell(b: Boundary) -> str:
    if b.devices is None:
        return _not_read(b.not_read.get("devices"))
    if not b.devices:
        return "none listed"
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in b.devices.items())


def instance_cells(extras: object) -> dict[str, str]:
    """One sample's boundary as table cells (COLUMNS but platform and instances)."""
    raw = extras.get("boundary") if isinstance(extras, Mapping) else None
    if raw is None:
        why = "not stored: a run from before bench read the boundary, or its sampling failed"
        return {c: _not_read(why) for c in COLUMNS[2:]}
    try:
        b = Boundary.model_validate(raw)
    except ValidationError as e:
        why = f"stored facts unreadable: {str(e).splitlines()[0][:80]}"
        return {c: _not_read(why) for c in COLUMNS[2:]}
    syscalls = b.syscalls_by or _not_read(b.not_read.get("syscalls_by"))
    return {COLUMNS[2]: syscalls, **_process_cells(b), "VM devices": _devices_cell(b)}


def _merge(counts: Counter[str]) -> str:
    """One cell from the instances' cells: the value, or each distinct one with its count."""
    if len(counts) == 1:
        return next(iter(counts))
    total = sum(counts.values())
    return "; ".join(f"{v} ({n} of {total})" for v, n in counts.most_common())


def boundary_table(
    samples: Iterable[Mapping[str, object]], platforms: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """Platform x fact rows from a run's samples (stored row dicts), in `platforms`'
    order (default: first appearance). Ready instances only when a platform has any:
    a failed one may have been read half-way. Values as read, else "not read (why)".

    One pass, keeping only counts of distinct cells: `samples` may be a generator over
    samples.jsonl, and a large run's rows are never all held."""
    # platform -> (ready?) -> column -> cell -> instances
    seen: dict[str, dict[bool, dict[str, Counter[str]]]] = {}
    for s in samples:
        platform = s.get("platform") if isinstance(s, Mapping) else None
        if not isinstance(platform, str):
            continue
        ready = s.get("ok") is True
        columns = seen.setdefault(platform, {}).setdefault(ready, {})
        for column, cell in instance_cells(s.get("extras")).items():
            columns.setdefault(column, Counter())[cell] += 1
    wanted = list(platforms or [])
    rows = []
    for name in wanted + [p for p in seen if p not in wanted]:
        groups = seen.get(name, {})
        ready = True in groups
        counted = groups.get(True) or groups.get(False) or {}
        n = sum(counted[COLUMNS[2]].values()) if counted else 0
        row = {"platform": name, "instances": f"{n}" + ("" if ready or not n else " (none ready)")}
        for c in COLUMNS[2:]:
            row[c] = _merge(counted[c]) if counted else _not_read("no samples")
        rows.append(row)
    return rows


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def boundary_markdown(
    samples: Iterable[Mapping[str, object]], platforms: Sequence[str] | None = None
) -> str:
    """The boundary table as Markdown (a pipe table; "|" in a value is escaped)."""
    rows = boundary_table(samples, platforms)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_escape(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"

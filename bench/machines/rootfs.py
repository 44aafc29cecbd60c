"""One busybox root filesystem, packed two ways: a tar for `docker import` and a
newc cpio (initramfs) for a VM. Same bytes of userland on both sides, so the only
difference a measurement sees is the isolation technology.

Both archives are deterministic (fixed mtimes and owners), so the rootfs digest
identifies the userland and is stored with the images.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import shutil
import struct
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.model.errors import ImageError

# Networking, only when bench boots a VM with a NIC (network: user): the kernel hands
# init `bench_net=ADDRESS/PREFIX,GATEWAY` from its command line as an environment
# variable (a container never has it). The guest kernel's virtio and virtio-net
# drivers are modules (Debian's): loaded from /etc/bench-modules in dependency order,
# then eth0 configured statically (no DHCP round trip). `bench_service` (base64 of a
# shell command line: the platform's `service:`) then runs in the background. After
# the marker: the boot to the marker is the same with a NIC as without one.
NET_BLOCK = """if [ -n "$bench_net" ]; then
  while read -r m; do insmod "$m" || echo "bench: insmod $m failed"; done < /etc/bench-modules
  ip link set lo up
  ip addr add "${bench_net%,*}" dev eth0 && ip link set eth0 up &&
    ip route add default via "${bench_net#*,}" || echo "bench: no network (eth0)"
fi
if [ -n "$bench_service" ]; then
  echo "$bench_service" | base64 -d > /tmp/bench-service && (sh /tmp/bench-service < /dev/null &)
fi
"""

# PID 1 in both a container and a VM. It prints the readiness marker with the guest's
# own view of uptime and kernel, then idles until it is stopped.
INIT_SCRIPT = (
    """#!/bin/sh
# bench init: PID 1 of the busybox image, in a container and in a VM alike.
[ -r /proc/uptime ] || mount -t proc proc /proc
read up _ < /proc/uptime
kernel=$(uname -r)
# ready: {channel: debugcon}: bench boots the VM with bench_ready=debugcon on its
# kernel command line, which the kernel hands to init as an environment variable (a
# container never has it). One byte to QEMU's debug console, I/O port 0xe9 (233),
# before the serial line: readiness that no emulated UART carries. The line follows at
# once (uname ran before), so its fields reach bench while the instance is measured.
[ "$bench_ready" = debugcon ] &&
    printf R | dd of=/dev/port bs=1 seek=233 count=1 conv=notrunc 2>/dev/null
echo "BENCH_READY uptime=$up kernel=$kernel"
"""
    + NET_BLOCK
    + """trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""
)

# The guest's disk, only when bench attaches one (volume: true): the kernel hands init
# `bench_volume=1` from its command line. Like the network, after the marker (a boot
# with a disk is the same boot to the marker as one without) and before the command
# loop below reads its first job, so a workload never runs before its disk is mounted.
# devtmpfs for /dev/vda (the initramfs's /dev has three fixed nodes); the disk's
# modules (/etc/bench-disk-modules: virtio_blk, ext4 and their dependencies; the bus's
# already loaded for the network are skipped); then the raw file the host made, all
# zeros, formatted ext2 by busybox's mke2fs (no host tool, no image to ship) and
# mounted where fio-volume and the io aggressor write (bench.backends.oci.VOLUME_DIR).
# Debian's kernel mounts ext2 with its ext4 driver (CONFIG_EXT4_USE_FOR_EXT2), which
# does O_DIRECT. No blocks reserved for root (-m 0), one inode per 64 KiB (-i 65536:
# a few big files live there): the inode tables mke2fs writes shrink from 16 MiB to
# 1 MiB, and formatting 256 MiB under TCG from 1.2 s to 0.5 s here. The whole block,
# from the marker to the mount, took 1.8 s under TCG on a quiet host (the modules'
# insmod, ext4's 2 MiB, most of the rest): not in the boot figure, before any job.
VOLUME_BLOCK = """if [ -n "$bench_volume" ]; then
  [ -e /dev/urandom ] || mount -t devtmpfs devtmpfs /dev
  if [ -r /etc/bench-disk-modules ]; then
    while read -r m; do
      n=${m##*/}; grep -q "^${n%.ko} " /proc/modules ||
        insmod "$m" || echo "bench: insmod $m failed"
    done < /etc/bench-disk-modules
  fi
  mkdir -p /bench-volume
  if [ ! -b /dev/vda ]; then echo "bench: no disk (/dev/vda) for /bench-volume"
  elif ! mke2fs -m 0 -i 65536 /dev/vda > /tmp/bench-mke2fs 2>&1; then
    echo "bench: mke2fs /dev/vda failed: $(tail -n 1 /tmp/bench-mke2fs)"
  elif ! mount -t ext2 /dev/vda /bench-volume; then
    echo "bench: mount /dev/vda on /bench-volume failed"
  fi
  rm -f /tmp/bench-mke2fs
fi
"""

# PID 1 of the workloads image: the same marker, then, where a console feeds it (a VM's
# serial line; a container's and native's stdin is empty), it runs the commands bench
# writes there, `BENCH_EXEC <base64 of a shell script>`, and answers each with its exit
# code, output sizes and digest and the output as base64 between two marker lines: a
# VM's exec without a guest agent (bench.backends.guest.run_in_guest). The kernel's
# console messages are turned down once ready (PID 1 only: never the host's, natively).
WORKLOAD_INIT_SCRIPT = (
    """#!/bin/sh
# bench init: PID 1 of the workloads image, in a container, natively and in a VM.
[ -r /proc/uptime ] || mount -t proc proc /proc
[ -e /dev/urandom ] || mount -t devtmpfs devtmpfs /dev
read up _ < /proc/uptime
echo "BENCH_READY uptime=$up kernel=$(uname -r)"
"""
    + NET_BLOCK
    + VOLUME_BLOCK
    + """trap 'exit 0' TERM INT
[ $$ -eq 1 ] && dmesg -n 1 2>/dev/null
# The loopback workloads' servers listen on 127.0.0.1: a guest's lo is down until its
# PID 1 brings it up (a container's is up already; natively it is the host's).
[ $$ -eq 1 ] && ip link set lo up 2>/dev/null
while read -r word job; do
  [ "$word" = BENCH_EXEC ] || continue
  echo "$job" | base64 -d > /tmp/bench-job
  sh /tmp/bench-job > /tmp/bench-job.out 2> /tmp/bench-job.err; rc=$?
  out=$(wc -c < /tmp/bench-job.out); err=$(wc -c < /tmp/bench-job.err)
  sum=$(cat /tmp/bench-job.out /tmp/bench-job.err | sha256sum | cut -c1-64)
  echo "BENCH_RESULT_BEGIN rc=$rc out=$out err=$err sha256=$sum"
  cat /tmp/bench-job.out /tmp/bench-job.err | base64
  echo "BENCH_RESULT_END"
  rm -f /tmp/bench-job /tmp/bench-job.out /tmp/bench-job.err
done
while :; do sleep 3600 & wait $!; done
"""
)

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root")


@dataclass(frozen=True)
class Entry:
    path: str  # relative, no leading slash
    kind: str  # "dir" | "file" | "link" | "chr"
    mode: int
    data: bytes = b""
    target: str = ""
    rdev: tuple[int, int] = (0, 0)


def find_busybox() -> Path:
    for c in BUSYBOX_CANDIDATES:
        p = Path(c)
        if p.is_file() and _is_static(p):
            return p
    raise ImageError(
        "no static busybox found (looked in /bin, /usr/bin): install it with "
        "`apt-get install busybox-static` (or run `make demo`, which does)"
    )


def _is_static(p: Path) -> bool:
    # A dynamic busybox would need the host's libc inside the image.
    try:
        out = subprocess.run([str(p), "--help"], capture_output=True, timeout=5)
    except OSError:
        return False
    if out.returncode not in (0, 1):
        return False
    with p.open("rb") as f:
        head = f.read(4096)
    return b"/lib64/ld-linux" not in head and b"/lib/ld-linux" not in head


def busybox_entries(busybox: Path) -> list[Entry]:
    applets = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    entries = [Entry(d, "dir", 0o755) for d in DIRS]
    entries[DIRS.index("tmp")] = Entry("tmp", "dir", 0o1777)
    entries.append(Entry("bin/busybox", "file", 0o755, busybox.read_bytes()))
    seen = {"bin/busybox"}
    for applet in sorted(applets):
        rel = applet.lstrip("/")
        if rel in seen or rel.split("/")[0] not in DIRS:
            continue
        seen.add(rel)
        entries.append(Entry(rel, "link", 0o777, target="/bin/busybox"))
    entries.append(Entry("init", "file", 0o755, INIT_SCRIPT.encode()))
    entries.append(Entry("etc/hostname", "file", 0o644, b"bench\n"))
    # Device nodes only matter in the initramfs (docker provides /dev itself).
    entries.append(Entry("dev/console", "chr", 0o600, rdev=(5, 1)))
    entries.append(Entry("dev/null", "chr", 0o666, rdev=(1, 3)))
    # I/O ports, for the debug-console readiness byte (CONFIG_DEVPORT, on in distro kernels).
    entries.append(Entry("dev/port", "chr", 0o600, rdev=(1, 4)))
    return entries


def to_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in entries:
            if e.kind == "chr":
                continue
            info = tarfile.TarInfo(e.path)
            info.mode, info.mtime, info.uid, info.gid = e.mode, 0, 0, 0
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, e.target
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def to_cpio_gz(entries: list[Entry]) -> bytes:
    """An initramfs: the kernel's "newc" cpio format, gzip-compressed."""
    out = io.BytesIO()
    kinds = {"dir": 0o040000, "file": 0o100000, "link": 0o120000, "chr": 0o020000}
    for ino, e in enumerate(entries, start=1):
        body = e.target.encode() if e.kind == "link" else e.data
        _cpio_member(out, e.path, ino, kinds[e.kind] | e.mode, body, e.rdev)
    _cpio_member(out, "TRAILER!!!", 0, 0, b"", (0, 0))
    # Pad to 512 bytes as cpio(1) does; the kernel tolerates either.
    out.write(b"\0" * (-out.tell() % 512))
    return gzip.compress(out.getvalue(), compresslevel=6, mtime=0)


def _cpio_member(out: io.BytesIO, name: str, ino: int, mode: int, body: bytes, rdev) -> None:
    nlink = 2 if mode & 0o040000 else 1
    fields = [ino, mode, 0, 0, nlink, 0, len(body), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
    out.write(name.encode() + b"\0")
    out.write(b"\0" * (-out.tell() % 4))
    out.write(body)
    out.write(b"\0" * (-out.tell() % 4))


def busybox_version(busybox: Path) -> str:
    out = subprocess.run([str(busybox)], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else ""
    return first.split(" multi-call")[0].strip() or "unknown"


def copy_file(src: Path, dst: Path) -> None:
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


# --- the workloads image: Debian's benchmark tools with their shared libraries --------
# The same binaries run natively (chroot of this tree), in every container and in a VM,
# so a figure differs only by where it ran. Debian's binaries are dynamic: each one is
# packed with the libraries its loader resolves, at the paths the loader printed, under
# Debian's merged /usr (lib -> usr/lib), so no ld.so.cache is needed.
WORKLOAD_TOOLS = ("stress-ng", "fio", "iperf3", "sockperf", "wrk")
LOADER = "/lib64/ld-linux-x86-64.so.2"
TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
# What the tools read from /etc: users for fio and stress-ng's --user checks, and
# localhost (iperf3 -c localhost) resolved without a resolver.
WORKLOAD_ETC = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": b"127.0.0.1 localhost\n::1 localhost\n",
}
# wrk's machine-readable result: its Lua `done` hook (wrk's SCRIPTING) writes the run's
# summary and latency percentiles as one JSON object to the file named by the variable
# WRK_RESULT_ENV (bench sets it; bench.measurements.workloads.Wrk reads the file), so
# wrk's human-readable printout is never parsed. Microseconds, as wrk counts them.
WRK_SCRIPT = "/etc/bench/wrk-report.lua"
WRK_RESULT_ENV = "BENCH_WRK_RESULT"
WRK_REPORT_LUA = f"""-- bench: the run as one JSON object, for bench to read (not wrk's printout).
function done(summary, latency, requests)
  local function n(v) return string.format("%.17g", v) end
  local e = summary.errors
  local text = "{{" ..
    '"duration_us": ' .. n(summary.duration) ..
    ', "requests": ' .. n(summary.requests) ..
    ', "bytes": ' .. n(summary.bytes) ..
    ', "errors": {{"connect": ' .. n(e.connect) .. ', "read": ' .. n(e.read) ..
    ', "write": ' .. n(e.write) .. ', "status": ' .. n(e.status) ..
    ', "timeout": ' .. n(e.timeout) .. '}}' ..
    ', "latency_us": {{"p50": ' .. n(latency:percentile(50)) ..
    ', "p99": ' .. n(latency:percentile(99)) .. ', "mean": ' .. n(latency.mean) ..
    ', "max": ' .. n(latency.max) .. '}}' ..
    "}}\\n"
  local path = os.getenv("{WRK_RESULT_ENV}")
  local out = path and io.open(path, "w") or io.stdout
  out:write(text)
  if path then out:close() end
end
"""
WORKLOAD_ETC[WRK_SCRIPT.lstrip("/")] = WRK_REPORT_LUA.encode()


@dataclass(frozen=True)
class PackedTool:
    name: str
    path: str  # where it sits in the image (usr/bin/NAME)
    package: str  # the Debian package that installed it
    version: str  # that package's version
    sha256: str  # of the binary


def find_tool(name: str) -> Path:
    for d in TOOL_DIRS:
        p = Path(d) / name
        if p.is_file():
            return p
    raise ImageError(
        f"{name} is not installed, and the workloads image packs it: install it with "
        f"`apt-get install {name}` (or `make workloads`, which installs "
        f"{', '.join(WORKLOAD_TOOLS)} and builds the image)"
    )


def library_closure(binary: Path, loader: str = LOADER) -> list[str]:
    """The absolute paths of every shared library `binary` loads (the loader included),
    as the dynamic loader itself resolves them (what ldd prints, RUNPATH honoured)."""
    out = subprocess.run([loader, "--list", str(binary)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ImageError(f"{loader} --list {binary} failed: {out.stderr.strip()[:200]}")
    return parse_closure(out.stdout, str(binary))


def parse_closure(text: str, binary: str) -> list[str]:
    """Library paths in `ld.so --list` output; a `not found` one is an error."""
    paths: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise ImageError(f"{binary} needs {line.split()[0]}, which the loader cannot find")
        if "=>" in line:
            target = line.split("=>", 1)[1].split("(")[0].strip()
        else:
            target = line.split("(")[0].strip()
        if target.startswith("/"):  # linux-vdso.so.1 has no file
            paths.append(target)
    return paths


def image_path(host_path: str) -> str:
    """Where a host library goes in the image: /lib and /lib64 under usr (merged /usr)."""
    rel = host_path.lstrip("/")
    if rel.startswith(("lib/", "lib64/")):
        rel = "usr/" + rel
    return rel


def package_of(path: Path) -> tuple[str, str]:
    """The Debian package that installed `path`, and its version ("-", "-" if dpkg cannot
    say: a tool built by hand is still packed, its version shown as unknown)."""
    try:
        owner = subprocess.run(
            ["dpkg-query", "-S", str(path)], capture_output=True, text=True, timeout=30
        ).stdout
        pkg = owner.split(":", 1)[0].strip() if ":" in owner else ""
        if not pkg:
            return "-", "-"
        version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        return pkg, version or "-"
    except OSError:
        return "-", "-"


def workload_entries(
    busybox: Path, tools: tuple[str, ...] = WORKLOAD_TOOLS
) -> tuple[list[Entry], list[PackedTool], dict[str, str]]:
    """The busybox tree plus each tool and its library closure. Returns the entries,
    the packed tools, and the sha256 of every file added (by image path)."""
    entries = [
        Entry("init", "file", 0o755, WORKLOAD_INIT_SCRIPT.encode()) if e.path == "init" else e
        for e in busybox_entries(busybox)
    ]
    have = {e.path for e in entries}
    added: dict[str, tuple[bytes, int]] = {}  # image path -> bytes, the host file's mode
    packed: list[PackedTool] = []
    for name in tools:
        binary = find_tool(name)
        data = binary.read_bytes()
        rel = f"usr/bin/{name}"
        added[rel] = (data, 0o755)
        pkg, version = package_of(binary)
        packed.append(PackedTool(name, rel, pkg, version, hashlib.sha256(data).hexdigest()))
        for lib in library_closure(binary):
            real = Path(lib).resolve()
            # The host's mode: the loader must stay executable (the kernel execs it).
            added.setdefault(image_path(lib), (real.read_bytes(), real.stat().st_mode & 0o755))
    dirs = {"usr/lib", "usr/lib64"}
    for rel in [*added, *WORKLOAD_ETC]:
        parts = rel.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    entries += [Entry(d, "dir", 0o755) for d in sorted(dirs - have)]
    entries += [Entry("lib", "link", 0o777, target="usr/lib")]
    entries += [Entry("lib64", "link", 0o777, target="usr/lib64")]
    entries += [Entry(p, "file", 0o644, data) for p, data in WORKLOAD_ETC.items()]
    for rel, (data, mode) in sorted(added.items()):
        entries.append(Entry(rel, "file", mode, data))
    digests = {rel: hashlib.sha256(data).hexdigest() for rel, (data, _) in sorted(added.items())}
    digests |= {rel: hashlib.sha256(data).hexdigest() for rel, data in WORKLOAD_ETC.items()}
    return entries, packed, digests


# --- the guest's drivers: kernel modules packed into the initramfs -------------------
# Debian's kernel builds virtio itself as modules: the bus (virtio_mmio for microvm,
# virtio_pci for pc and q35), the ring, and virtio_net with the failover pair it links
# against. Each is packed with the modules it depends on (its .modinfo `depends=`, what
# `modinfo -F depends` prints), deps first, so busybox insmod loads them in file order
# (no modprobe, no modules.dep: Debian's .deb ships none, depmod makes it on install).
NET_MODULE_ROOTS = ("virtio_mmio", "virtio_pci", "virtio_net")
# The disk of `volume: true`: virtio_blk on the same bus, and ext4 (it mounts the ext2
# the guest formats; its depends: jbd2, mbcache, crc16) with crc32c_generic, which no
# .modinfo names: ext4 asks the crypto API for "crc32c" at mount, which would load it by
# modprobe, and the guest has none ("EXT4-fs (vda): Cannot load crc32c driver"). The
# generic one: crc32c-intel needs SSE4.2, which TCG's CPU may lack. Only in the workloads image:
# ext4 is 2 MiB, which would double the busybox image's initramfs and so every VM's
# boot figure; a disk is for the workloads (fio, the io aggressor) anyway.
DISK_MODULE_ROOTS = ("virtio_mmio", "virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
GUEST_MODULE_ROOTS = tuple(dict.fromkeys(NET_MODULE_ROOTS + DISK_MODULE_ROOTS))
MODULES_LIST = "etc/bench-modules"  # the network's load order, one path a line
DISK_MODULES_LIST = "etc/bench-disk-modules"  # the disk's (VOLUME_BLOCK)


@dataclass(frozen=True)
class Module:
    name: str
    # In the image: usr/lib/modules/RELEASE/NAME.ko, decompressed (under usr/: the
    # workloads image's /lib is a link to usr/lib, Debian's merged /usr).
    path: str
    data: bytes
    source: str  # the file it came from, under the modules folder


def modinfo(data: bytes) -> dict[str, str]:
    """The `key=value` strings of an ELF64 kernel module's .modinfo section (the first
    value of each key), as modinfo(8) reads them."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ImageError("not an ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:  # name offset, file offset, size
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, str_off, str_size = section(shstrndx)
    names = data[str_off : str_off + str_size]
    info: dict[str, str] = {}
    for i in range(shnum):
        name, offset, size = section(i)
        if names[name : names.index(b"\0", name)] != b".modinfo":
            continue
        for item in data[offset : offset + size].split(b"\0"):
            key, eq, value = item.decode(errors="replace").partition("=")
            if eq:
                info.setdefault(key, value)
    return info


def modules_dir(kernel: Path, release: str) -> Path | None:
    """Where the modules of the kernel at `kernel` (release `release`) are: beside a
    fetched kernel (scripts/setup-host.sh extracts the network ones to
    KERNEL_FOLDER/modules/RELEASE), else the host's own /lib/modules/RELEASE."""
    for d in (kernel.parent / "modules" / release, Path("/lib/modules") / release):
        if (d / "kernel").is_dir():
            return d
    return None


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    # busybox insmod may lack xz support: packed decompressed (Debian 13 ships .ko.xz).
    return lzma.decompress(data) if path.suffix == ".xz" else data


def module_closure(moddir: Path, roots: tuple[str, ...] = NET_MODULE_ROOTS) -> list[Module]:
    """`roots` and every module they depend on, deps first; a module the kernel has
    built in (modules.builtin) is left out, as are its own dependencies' built-in ones."""
    release = moddir.name
    builtin: set[str] = set()
    if (moddir / "modules.builtin").is_file():
        builtin = {
            Path(line.strip()).name.split(".ko")[0].replace("-", "_")
            for line in (moddir / "modules.builtin").read_text().splitlines()
            if line.strip()
        }
    files: dict[str, Path] = {}
    for f in sorted((moddir / "kernel").rglob("*.ko*")):
        if f.name.endswith((".ko", ".ko.xz")):
            files.setdefault(f.name.split(".ko")[0].replace("-", "_"), f)
    order: list[Module] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise ImageError(f"kernel modules depend on each other in a loop: {' -> '.join(chain)}")
        f = files.get(name)
        if f is None:
            raise ImageError(
                f"the guest kernel's module {name} is not in {moddir} (neither a module "
                "nor built in): scripts/setup-host.sh (make setup) extracts the network "
                "and disk ones beside a fetched kernel"
            )
        data = _read_module(f)
        info = modinfo(data)
        if info.get("vermagic", "").split(" ")[0] != release:
            raise ImageError(
                f"{f} is for kernel {info.get('vermagic', '?').split(' ')[0]}, not {release}"
            )
        for dep in filter(None, info.get("depends", "").split(",")):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append(
            Module(name, f"usr/lib/modules/{release}/{name}.ko", data, str(f.relative_to(moddir)))
        )

    for root in roots:
        visit(root, ())
    return order


def module_entries(
    modules: list[Module], have: set[str], disk: list[Module] | None = None
) -> list[Entry]:
    """The modules' files, their folders not among `have` (the paths already in the
    tree) and the init's load lists: the network's `modules` (MODULES_LIST) and the
    disk's `disk` (DISK_MODULES_LIST); a module in both is packed once."""
    disk = disk or []
    if not modules and not disk:
        return []
    parts = (modules or disk)[0].path.split("/")[:-1]
    dirs = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    entries = [Entry(d, "dir", 0o755) for d in dirs if d not in have]
    files = {m.path: m for m in [*modules, *disk]}
    entries += [Entry(m.path, "file", 0o644, m.data) for m in files.values()]
    for listed, path in ((modules, MODULES_LIST), (disk, DISK_MODULES_LIST)):
        if listed:
            listing = "".join(f"/{m.path}\n" for m in listed).encode()
            entries.append(Entry(path, "file", 0o644, listing))
    return entries

"""One busybox root filesystem, packed two ways: a tar for `docker import` and a
newc cpio (initramfs) for a VM. Same bytes of userland on both sides, so the only
difference a measurement sees is the isolation technology.

Both archives are deterministic (fixed mtimes and owners), so the rootfs digest
identifies the userland and is stored with the images.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.model.errors import ImageError

# PID 1 in both a container and a VM. It prints the readiness marker with the guest's
# own view of uptime and kernel, then idles until it is stopped.
INIT_SCRIPT = """#!/bin/sh
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
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""

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

import gzip
import io
import tarfile

import pytest

from bench.machines.rootfs import INIT_SCRIPT, Entry, to_cpio_gz, to_tar

ENTRIES = [
    Entry("bin", "dir", 0o755),
    Entry("bin/busybox", "file", 0o755, b"\x7fELF fake"),
    Entry("bin/sh", "link", 0o777, target="/bin/busybox"),
    Entry("init", "file", 0o755, INIT_SCRIPT.encode()),
    Entry("dev", "dir", 0o755),
    Entry("dev/console", "chr", 0o600, rdev=(5, 1)),
]


def parse_newc(data: bytes):
    out, pos = {}, 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body, (f[9], f[10]))


def test_cpio_is_valid_newc_with_device_nodes():
    members = parse_newc(gzip.decompress(to_cpio_gz(ENTRIES)))
    assert set(members) == {e.path for e in ENTRIES}
    mode, body, rdev = members["dev/console"]
    assert mode & 0o170000 == 0o020000 and rdev == (5, 1)
    assert members["bin/sh"][1] == b"/bin/busybox"
    assert members["init"][1].startswith(b"#!/bin/sh")


def test_tar_has_userland_but_no_device_nodes_and_is_deterministic():
    data = to_tar(ENTRIES)
    assert data == to_tar(ENTRIES)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert "dev/console" not in names
        assert tar.getmember("bin/sh").linkname == "/bin/busybox"
        assert tar.extractfile("init").read() == INIT_SCRIPT.encode()
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())


def test_init_prints_marker_with_uptime_and_kernel():
    assert "\nkernel=$(uname -r)\n" in INIT_SCRIPT
    assert 'echo "BENCH_READY uptime=$up kernel=$kernel"' in INIT_SCRIPT


@pytest.mark.parametrize("path", ["/bin/busybox"])
def test_real_busybox_rootfs(path):
    from pathlib import Path

    from bench.machines.rootfs import busybox_entries
    from tests.conftest import require_engine

    # CI installs busybox-static (make test): there, missing is a failure, not a skip.
    require_engine("busybox-static", Path(path).exists(), f"{path} not found")
    names = {e.path for e in busybox_entries(Path(path))}
    assert {"bin/sh", "bin/sleep", "bin/mount", "init", "dev/console"} <= names

"""The VM image build gives only the folders it makes a world-readable mode."""

from __future__ import annotations

import stat

from bench.machines import images


def mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_build_leaves_a_named_cache_folder_mode_alone(tmp_path, monkeypatch):
    # $BENCH_CACHE_DIR may name a private folder of the user's (it was chmodded 0755).
    cache = tmp_path / "private"
    cache.mkdir(mode=0o700)
    cache.chmod(0o700)
    kernel = tmp_path / "vmlinuz-test"
    kernel.write_bytes(b"not a kernel, only copied")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    monkeypatch.setattr(images, "kernel_release", lambda _k: "test")
    art = images.build_rootfs("busybox", kernel=kernel)
    assert mode(cache) == 0o700
    assert mode(cache / "images") == 0o755 and mode(art.kernel.parent) == 0o755
    assert mode(art.kernel) == 0o644


def test_make_readable_dirs_creates_missing_levels_only(tmp_path):
    tmp_path.chmod(0o711)
    images.make_readable_dirs(tmp_path / "a" / "b")
    assert mode(tmp_path) == 0o711
    assert mode(tmp_path / "a") == 0o755 and mode(tmp_path / "a" / "b") == 0o755

"""scripts/setup-host.sh in debootstrapped Debian chroots, and its kernel fetch.

- Debian 12: a host running Docker CE (a dummy docker-ce .deb that conflicts with
  docker.io like the real one) keeps it: the plan leaves docker.io out, and when
  docker.io is wanted anyway the set-up stops with one line naming the conflict.
- Debian 13: every package the set-up would install resolves (`apt-get install -s`).
- The guest kernel is fetched in a root-only folder, its hash checked, no setuid kept.

The minbase chroots are built once per release with debootstrap and cached as tarballs
in /var/cache/bench-test/chroot (see `debian_root`); each test unpacks a fresh copy under
its tmp_path, so the host's dpkg database is never touched. In CI (CI=true) a missing
prerequisite (root, debootstrap) fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO, require_engine

SCRIPT = REPO / "scripts" / "setup-host.sh"
CACHE = Path("/var/cache/bench-test/chroot")
MIRROR = "http://deb.debian.org/debian"
# Inside the chroot: no variable of the host's (DOCKER_HOST, PYTHON, ...) leaks in.
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C"}
CONFLICT = re.compile(r"^setup-host: ERROR: docker\.io conflicts with installed docker-ce: ")


def _require_root_and_debootstrap() -> None:
    require_engine("root", os.geteuid() == 0, "debootstrap and chroot need root")
    require_engine(
        "debootstrap",
        shutil.which("debootstrap") is not None,
        "scripts/setup-host.sh installs it (TEST_PACKAGES)",
    )


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (the order to unmount them)."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_all(root: Path) -> None:
    for point in _mounts_under(root):
        subprocess.run(["umount", point], check=True)


def _remove_root(root: Path) -> None:
    """rmtree only when nothing is mounted below: it would delete through a mount."""
    _unmount_all(root)
    if _mounts_under(root):
        raise RuntimeError(f"still mounted under {root}; not removing it")
    shutil.rmtree(root, ignore_errors=False)


def _build_tarball(release: str, tarball: Path) -> None:
    """debootstrap --variant=minbase, then the tarball (written whole, then renamed)."""
    build = Path(f"{tarball}.build")
    if build.exists():
        _remove_root(build)  # an interrupted build
    started = time.monotonic()
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", release, str(build), MIRROR],
            check=True,
            capture_output=True,
        )
        # debootstrap may leave its /proc mounted in the target.
        _unmount_all(build)
        subprocess.run(
            ["tar", "-C", str(build), "--numeric-owner", "-cf", f"{tarball}.tmp", "."],
            check=True,
        )
        os.replace(f"{tarball}.tmp", tarball)
    finally:
        _remove_root(build)
    print(f"built {tarball} in {time.monotonic() - started:.0f} s")


@contextlib.contextmanager
def debian_root(release: str, where: Path):
    """A fresh minbase chroot of `release` at where/root, /proc mounted (bash's process
    substitution and dpkg need it), apt's lists updated; unmounted and removed after."""
    _require_root_and_debootstrap()
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{release}-minbase.tar"
    with open(CACHE / f"{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building it
        if not tarball.exists():
            _build_tarball(release, tarball)
    root = where / "root"
    root.mkdir()
    try:
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xf", str(tarball)], check=True)
        shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
        # Packages installed in the chroot must not start their daemons.
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        (root / "opt" / "bench" / "scripts").mkdir(parents=True)
        for script in ("setup-host.sh", "start-engines.sh", "docker_runtimes.py"):
            shutil.copy2(REPO / "scripts" / script, root / "opt" / "bench" / "scripts" / script)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        in_root(root, "apt-get", "update", "-qq")
        yield root
    finally:
        _remove_root(root)


def in_root(root: Path, *argv: str, check: bool = True, **env: str):
    return subprocess.run(
        [
            "chroot",
            str(root),
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in {**CHROOT_ENV, **env}.items()),
            *argv,
        ],
        capture_output=True,
        text=True,
        check=check,
    )


def setup_host(root: Path, *args: str, **env: str):
    return in_root(root, "bash", "/opt/bench/scripts/setup-host.sh", *args, check=False, **env)


def planned(result) -> list[str]:
    """The packages of the set-up's plan lines (`apt-get install ... PKGS`)."""
    pkgs: list[str] = []
    for line in result.stderr.splitlines():
        m = re.match(
            r"setup-host: plan \(.*\): apt-get install --no-install-recommends --no-remove (.*)$",
            line,
        )
        if m:
            pkgs += m.group(1).split()
    return pkgs


def dpkg_status(root: Path, pkg: str) -> str:
    return in_root(
        root, "dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg, check=False
    ).stdout.strip()


def build_deb(where: Path, control: dict[str, str], files: dict[str, tuple[str, int]]) -> Path:
    """A .deb made with dpkg-deb: control fields, then path -> (content, mode)."""
    pkg = where / f"{control['Package']}-tree"
    (pkg / "DEBIAN").mkdir(parents=True)
    fields = {
        "Version": "1",
        "Architecture": "amd64",
        "Maintainer": "bench test <t@example.invalid>",
    }
    fields.update(control)
    fields.setdefault("Description", "bench test dummy")
    (pkg / "DEBIAN" / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    for path, (content, mode) in files.items():
        f = pkg / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
        f.chmod(mode)
    deb = where / f"{control['Package']}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


# Docker CE's own packaging: docker-ce conflicts with Debian's docker.io and replaces it.
DOCKER_CE = {
    "Package": "docker-ce",
    "Version": "5:27.0.0-1~debian.12~bookworm",
    "Conflicts": "docker (<< 1.5~), docker-engine, docker.io",
    "Replaces": "docker-engine, docker.io",
    "Description": "dummy Docker CE for bench's set-up test",
}


def test_bookworm_docker_ce_is_kept(tmp_path):
    with debian_root("bookworm", tmp_path) as root:
        # A docker CLI alone (like a static /usr/local/bin/docker) is no engine.
        cli = root / "usr" / "local" / "bin" / "docker"
        cli.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
        cli.chmod(0o755)
        plan = setup_host(root, "--plan")
        assert plan.returncode == 0, plan.stderr
        assert "docker.io" in planned(plan), plan.stderr

        deb = build_deb(tmp_path, DOCKER_CE, {"usr/bin/dockerd": ("#!/bin/sh\nexit 0\n", 0o755)})
        shutil.copy(deb, root / "tmp" / deb.name)
        in_root(root, "dpkg", "-i", f"/tmp/{deb.name}")
        assert dpkg_status(root, "docker-ce") == "ii"

        # Docker CE's dockerd is the engine: docker.io (and docker-cli) are not planned,
        # the rest is.
        plan = setup_host(root, "--plan")
        assert plan.returncode == 0, plan.stderr
        pkgs = planned(plan)
        assert "docker.io" not in pkgs and "podman" in pkgs and "libvirt-daemon-system" in pkgs, (
            plan.stderr
        )
        assert "Remv" not in plan.stderr

        # A docker-ce whose dockerd is gone: docker.io is wanted, and the real set-up stops
        # at its plan with one line naming the conflict, before installing anything.
        (root / "usr" / "bin" / "dockerd").unlink()
        run = setup_host(root, BENCH_SKIP_ENGINES="1")
        errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
        assert run.returncode == 1 and len(errors) == 1 and CONFLICT.match(errors[0]), run.stderr
        assert dpkg_status(root, "docker-ce") == "ii"
        assert dpkg_status(root, "podman") != "ii"  # nothing was installed

        # And apt itself, as the set-up calls it, refuses to remove docker-ce.
        forced = in_root(
            root,
            "bash",
            "-c",
            "source /opt/bench/scripts/setup-host.sh; apt_install docker.io",
            check=False,
        )
        assert forced.returncode != 0
        assert "remove is disabled" in forced.stdout + forced.stderr
        assert dpkg_status(root, "docker-ce") == "ii"


def test_trixie_plan_resolves(tmp_path):
    with debian_root("trixie", tmp_path) as root:
        plan = setup_host(root, "--plan")
        assert plan.returncode == 0, plan.stderr
        pkgs = planned(plan)
        # Debian 13: the docker CLI is split off docker.io; python3 is not in minbase.
        for pkg in (
            "docker.io",
            "docker-cli",
            "podman",
            "runc",
            "libvirt-daemon-system",
            "qemu-system-x86",
            "python3-venv",
            "python3-dev",
            "runsc",
            "crun",
        ):
            assert pkg in pkgs, (pkg, plan.stderr)
        assert "guest kernel from linux-image-amd64" in plan.stderr
        # Exactly what the set-up would install resolves, removing nothing.
        sim = in_root(
            root,
            "apt-get",
            "install",
            "-s",
            "--no-install-recommends",
            "--no-remove",
            *pkgs,
            check=False,
        )
        assert sim.returncode == 0, sim.stdout[-2000:] + sim.stderr
        assert "\nRemv " not in sim.stdout and "\nInst libvirt-daemon-driver-qemu " in sim.stdout


def test_trixie_setup_installs_and_builds_the_venv(tmp_path):
    """As much of `make demo` as a chroot allows: the set-up for real (apt, the guest
    kernel, runtime registration; no engines started), then the venv with Debian 13's
    python3.13 and `pip install -e .[dev]` (libvirt-python built against libvirt 11)."""
    with debian_root("trixie", tmp_path) as root:
        run = setup_host(root, BENCH_SKIP_ENGINES="1")
        assert run.returncode == 0, run.stderr[-3000:]
        for pkg in ("docker.io", "docker-cli", "podman", "libvirt-daemon-system", "runsc"):
            assert dpkg_status(root, pkg) == "ii", pkg
        kernels = list((root / "var" / "cache" / "bench" / "kernel").glob("vmlinuz-*"))
        assert len(kernels) == 1 and kernels[0].stat().st_mode & 0o7777 == 0o644
        assert '"runsc"' in (root / "etc" / "docker" / "daemon.json").read_text()
        again = setup_host(root, "--plan")
        assert again.returncode == 0 and "plan: nothing to install" in again.stderr, again.stderr

        project = root / "opt" / "bench"
        for part in ("bench", "scenarios", "pyproject.toml", "README.md"):
            src = REPO / part
            if src.is_dir():
                shutil.copytree(src, project / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, project / part)
        # The host's trust (here a proxy's CA) for pip's downloads.
        shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", root / "tmp" / "host-ca.crt")
        venv = in_root(
            root,
            "bash",
            "-c",
            "cd /opt/bench && python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'"
            " && .venv/bin/python -c 'import sys, libvirt; print(sys.version_info[:2] >= (3, 13))'"
            " && .venv/bin/bench validate --offline scenarios/quickstart.yaml",
            check=False,
            PIP_CERT="/tmp/host-ca.crt",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        assert venv.returncode == 0, venv.stdout[-2000:] + venv.stderr[-3000:]
        assert venv.stdout.startswith("True\n")


# -- the guest kernel ----------------------------------------------------------------------


def _sourced(function: str, *args: str, **env: str):
    """Call one function of setup-host.sh (sourced: its main part does not run)."""
    return subprocess.run(
        [
            "bash",
            "-c",
            f'source "$1"; shift; APT_UPDATED=1; {function} "$@"',
            "bash",
            SCRIPT,
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


def _kernel_deb(where: Path) -> Path:
    return build_deb(
        where,
        {"Package": "linux-image-x"},
        {
            "boot/vmlinuz-x": ("not a kernel\n", 0o4755),
            "lib/modules/x/m.ko": ("", 0o644),
            "lib/modules/x/kernel/drivers/net/virtio_net.ko": ("a module\n", 0o4755),
        },
    )


def test_kernel_extraction_drops_setuid(tmp_path):
    deb = _kernel_deb(tmp_path)
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True)
    assert "-rwsr-xr-x root/root" in listing.stdout  # the archive does carry it
    out = tmp_path / "x"
    out.mkdir()
    result = _sourced("extract_kernel", str(deb), str(out))
    assert result.returncode == 0, result.stderr
    kernel = out / "boot" / "vmlinuz-x"
    assert kernel.read_text() == "not a kernel\n"
    assert kernel.stat().st_mode & 0o7000 == 0
    # Only ./boot/vmlinuz-* and the guest's network modules, without setuid either.
    (module,) = [p for p in (out / "lib").rglob("*") if p.is_file()]
    assert module.relative_to(out).as_posix() == "lib/modules/x/kernel/drivers/net/virtio_net.ko"
    assert module.stat().st_mode & 0o7000 == 0


def test_installed_modules_go_beside_the_kernel(tmp_path):
    deb = _kernel_deb(tmp_path)
    out = tmp_path / "x"
    out.mkdir()
    assert _sourced("extract_kernel", str(deb), str(out)).returncode == 0
    cache = tmp_path / "cache"
    result = _sourced("install_modules", str(out), "x", BENCH_CACHE_DIR=str(cache))
    assert result.returncode == 0, result.stderr
    module = cache / "kernel" / "modules" / "x" / "kernel" / "drivers" / "net" / "virtio_net.ko"
    assert module.read_text() == "a module\n"
    assert module.stat().st_mode & 0o7777 == 0o644


def test_disk_modules_are_extracted_by_a_tar_of_their_own(tmp_path):
    """Debian 13's layout (usr/lib/modules): the network and the disk modules both; a
    kernel whose disk modules are built in (none in its package) still gets its
    network ones, with a warning for the disk."""
    root = "usr/lib/modules/x/kernel"
    net = {f"{root}/drivers/net/virtio_net.ko": ("net\n", 0o644)}
    disk = {
        f"{root}/drivers/block/virtio_blk.ko.xz": ("blk\n", 0o644),
        f"{root}/fs/ext4/ext4.ko.xz": ("ext4\n", 0o644),
        f"{root}/fs/jbd2/jbd2.ko.xz": ("jbd2\n", 0o644),
        f"{root}/fs/mbcache.ko.xz": ("mb\n", 0o644),
        f"{root}/lib/crc16.ko.xz": ("crc16\n", 0o644),
        f"{root}/crypto/crc32c_generic.ko.xz": ("crc32c\n", 0o644),
        f"{root}/fs/xfs/xfs.ko.xz": ("not asked for\n", 0o644),
    }
    files = {"boot/vmlinuz-x": ("k\n", 0o644), **net, **disk}
    deb = build_deb(tmp_path / "both", {"Package": "linux-image-x"}, files)
    out = tmp_path / "x"
    out.mkdir()
    result = _sourced("extract_kernel", str(deb), str(out))
    assert result.returncode == 0, result.stderr
    got = {p.relative_to(out).as_posix() for p in (out / "usr").rglob("*") if p.is_file()}
    assert got == {*net, *disk} - {f"{root}/fs/xfs/xfs.ko.xz"}
    assert "disk modules" not in result.stderr
    # Built in: the package has only the network's.
    files = {"boot/vmlinuz-x": ("k\n", 0o644), **net}
    deb = build_deb(tmp_path / "net", {"Package": "linux-image-x"}, files)
    out = tmp_path / "y"
    out.mkdir()
    result = _sourced("extract_kernel", str(deb), str(out))
    assert result.returncode == 0, result.stderr
    assert (out / f"{root}/drivers/net/virtio_net.ko").read_text() == "net\n"
    assert "lacks some of the guest's disk modules" in result.stderr


def test_a_fetched_kernel_without_virtio_blk_is_fetched_again(tmp_path):
    mods = tmp_path / "modules" / "x"
    (mods / "kernel" / "drivers" / "net").mkdir(parents=True)
    (mods / "modules.builtin").write_text("kernel/drivers/block/loop.ko\n")
    assert _sourced("has_guest_modules", str(mods)).returncode == 1  # network only
    assert _sourced("has_guest_modules", str(tmp_path / "none")).returncode == 1
    (mods / "modules.builtin").write_text("kernel/drivers/block/virtio_blk.ko\n")
    assert _sourced("has_guest_modules", str(mods)).returncode == 0  # built in
    (mods / "modules.builtin").write_text("")
    (mods / "kernel" / "drivers" / "block").mkdir()
    (mods / "kernel" / "drivers" / "block" / "virtio_blk.ko.xz").write_text("")
    assert _sourced("has_guest_modules", str(mods)).returncode == 0


def test_kernel_deb_with_another_hash_is_refused(tmp_path):
    deb = _kernel_deb(tmp_path)
    good = hashlib.sha256(deb.read_bytes()).hexdigest()
    assert _sourced("verify_deb", str(deb), good).returncode == 0
    tampered = tmp_path / "tampered.deb"
    tampered.write_bytes(deb.read_bytes() + b"\0")
    result = _sourced("verify_deb", str(tampered), good)
    assert result.returncode == 1
    assert result.stderr.startswith("setup-host: ERROR: ") and "refusing it" in result.stderr


def test_fetch_kernel_downloads_into_a_private_folder(tmp_path):
    """The real fetch from the host's apt: the .deb lands in a 0700 folder of root's
    (seen by an apt-get wrapper on PATH), and the kernel in the cache is 0644."""
    require_engine("root", os.geteuid() == 0, "the kernel fetch runs as root")
    shim = tmp_path / "bin"
    shim.mkdir()
    seen = tmp_path / "download-dirs"
    (shim / "apt-get").write_text(
        "#!/bin/sh\n"
        'case " $* " in *" download "*) stat -c "%a %U $*" . >>"$SHIM_LOG" ;; esac\n'
        'exec /usr/bin/apt-get "$@"\n'
    )
    (shim / "apt-get").chmod(0o755)
    cache = tmp_path / "cache"
    result = _sourced(
        "fetch_kernel",
        "linux-image-amd64",
        PATH=f"{shim}:{os.environ['PATH']}",
        SHIM_LOG=str(seen),
        BENCH_CACHE_DIR=str(cache),
        TMPDIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    downloads = [line for line in seen.read_text().splitlines() if "--print-uris" not in line]
    assert len(downloads) == 1 and downloads[0].startswith("700 root "), downloads
    kernels = list((cache / "kernel").glob("vmlinuz-*"))
    assert len(kernels) == 1 and kernels[0].stat().st_mode & 0o7777 == 0o644
    # Nothing of the download is left in TMPDIR.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "cache", "download-dirs"]

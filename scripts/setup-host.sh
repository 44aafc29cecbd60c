#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host for bench: install the container and VM engines that are
# missing, the build prerequisites for libvirt-python, a guest kernel, then start the
# engines. Tested on Debian 12 (bookworm) and Debian 13 (trixie).
#
# What is missing is decided by what works, not by package name: an engine that is
# already there (Docker CE's dockerd, a docker socket that answers, podman, libvirtd,
# qemu-system-x86_64 from any source) is used as it is. apt's plan is printed first and
# installs run with --no-remove: a package that would remove an installed one (Debian's
# docker.io conflicts with docker-ce, docker-ce-cli and containerd.io) stops the set-up
# with one line naming both, before anything changes.
#
# Idempotent: when nothing is missing it only runs a few probes (well under 2 s) and
# never touches apt.
#
# Usage: setup-host.sh [--plan]
#   --plan (or BENCH_SETUP_PLAN=1): print what would be installed and fetched (apt's
#          simulated plan, from the package lists as they are) and exit without changing
#          anything; exit 1 when the plan is impossible (a conflict, an unknown package).
#
# Environment:
#   PYTHON                    interpreter that `make setup` will build the venv with
#                             (default: python3); used to decide whether python3-venv
#                             and python3-dev are needed.
#   BENCH_KERNEL              path to a guest kernel; when set and readable no kernel
#                             is fetched.
#   BENCH_CACHE_DIR           bench's cache (default /var/cache/bench); a fetched kernel
#                             goes to $BENCH_CACHE_DIR/kernel/vmlinuz-*.
#   BENCH_FORCE_KERNEL_FETCH  =1: for testing the kernel-fetch branch only. Ignores
#                             BENCH_KERNEL, /boot/vmlinuz-* and an already cached kernel,
#                             and downloads/extracts the kernel into the cache again.
#   BENCH_SKIP_ENGINES        =1: do not run scripts/start-engines.sh at the end.
#   BENCH_DOCKER_DAEMON_JSON  dockerd's configuration, where runsc and crun are registered
#                             (default /etc/docker/daemon.json).
#   BENCH_WORKLOADS           =1: also install stress-ng, fio, iperf3, sockperf and wrk, the
#                             tools the `workloads` bench image packs (`make workloads`;
#                             CI=true too).
#   BENCH_SKIP_SSH_LAB        =1 (read by start-engines.sh): no loopback sshd, no second
#                             dockerd; openssh-server is still installed.
#
# Sourced (`source setup-host.sh`), it only defines its functions (for the tests).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# Same place bench looks for it (bench/model/paths.py: $BENCH_CACHE_DIR, as root /var/cache/bench).
CACHE_DIR=${BENCH_CACHE_DIR:-/var/cache/bench}
KERNEL_CACHE_DIR=$CACHE_DIR/kernel
PY=${PYTHON:-python3}
PLAN_ONLY=${BENCH_SETUP_PLAN:-0}

# What bench needs on the host: a package (Debian and Ubuntu use the same names), then
# what shows that it is already there:
#   cmd:NAME    an executable NAME on PATH (or in /usr/sbin, /sbin), whatever installed it
#   path:FILE   an executable FILE
#   docker      a dockerd binary, or a docker socket that answers (a docker CLI alone,
#               like a static /usr/local/bin/docker, is not an engine)
#   dpkg        the package itself is installed
PACKAGES=(
    "docker.io              docker"             # Docker Engine (dockerd, containerd, runc)
    "podman                 cmd:podman"         # podman, whose REST service bench drives
    "runc                   cmd:runc"           # podman's service runs with --runtime runc (start-engines.sh)
    "busybox-static         dpkg"               # rootfs for the locally built container/guest images
    "libvirt-daemon-system  cmd:libvirtd"       # libvirtd, virtlogd, QEMU driver
    "libvirt-clients        cmd:virsh"          # virsh
    "libvirt-dev            dpkg"               # headers for `pip install libvirt-python`
    "pkg-config             cmd:pkg-config"     # libvirt-python's build finds libvirt through it
    "gcc                    cmd:gcc"            # libvirt-python is built from source
    "qemu-system-x86        cmd:qemu-system-x86_64" # the VM engine (TCG or KVM)
    "qemu-utils             cmd:qemu-img"       # qemu-img
    "passt                  cmd:passt"          # libvirt's user-mode NIC (network: user) where libvirt offers it (Debian 13; 12's libvirt 9.0 refuses it and bench uses QEMU's slirp)
    "make                   cmd:make"           # the Makefile is the entry point (absent on minimal images)
)
# Not needed to measure local engines (so without root only a warning): the SSH lab
# that scripts/start-engines.sh starts (a loopback-only sshd of its own, for the
# remote-host tests), and what only the tests use (in CI a missing one fails its test).
LAB_PACKAGES=(
    "openssh-server         path:/usr/sbin/sshd"
    "chromium               cmd:chromium"       # tests/integration/test_report_browser.py
    "debootstrap            cmd:debootstrap"    # tests/integration/test_setup_host.py
)
# Installed with docker.io, where the release splits it off (Debian 13: docker.io only
# recommends its CLI, and start-engines.sh probes dockerd with it when curl is absent).
DOCKER_EXTRA_PACKAGES=(docker-cli)

# The tools the `workloads` bench image packs from this host (bench images build
# workloads copies each binary with its shared libraries): installed only when that
# image is asked for (BENCH_WORKLOADS=1, as `make workloads` sets it) or in CI (CI=true:
# its tests build the image), so `make demo` and `make setup` stay as they were.
WORKLOAD_PACKAGES=(
    "stress-ng              cmd:stress-ng"      # CPU, memory, system-call, context-switch stressors
    "fio                    cmd:fio"            # disk I/O
    "iperf3                 cmd:iperf3"         # network throughput
    "sockperf               cmd:sockperf"       # network request/response latency
    "wrk                    cmd:wrk"            # HTTP load against busybox httpd (the application workload)
)

# Other OCI runtimes for docker platforms' `runtime:` key. Optional: a distribution
# release without them only loses those platforms (a warning, not an error).
RUNTIME_PACKAGES=(
    "runsc                  cmd:runsc"          # gVisor: a sandboxed container runtime (`runtime: runsc`)
    "crun                   cmd:crun"           # `runtime: crun` (works on pure cgroup v1 or v2 hosts only)
)

log() { printf 'setup-host: %s\n' "$*" >&2; }
die() {
    local line
    for line in "$@"; do printf 'setup-host: ERROR: %s\n' "$line" >&2; done
    exit 1
}

# Human-readable list of what the host needs, for the error paths where we
# cannot install it ourselves.
print_requirements() {
    cat >&2 <<'EOF'
setup-host: bench needs, on the host:
  - Docker Engine (dockerd) reachable on /var/run/docker.sock (Docker CE's is fine)
  - podman, its REST service on /run/podman/podman.sock (`podman system service`)
  - libvirt (libvirtd + virtlogd, virsh) with the QEMU driver, and qemu-system-x86_64 + qemu-img
  - a static busybox binary (to build the container/guest images)
  - gcc, pkg-config and the libvirt development headers (pip builds libvirt-python)
  - python3 with the venv module (and Python headers for a system python)
  - a Linux kernel image for the guests (/boot/vmlinuz-*, or set BENCH_KERNEL=/path/to/vmlinuz)
  On Debian/Ubuntu, as root:
    apt-get update
    apt-get install --no-install-recommends --no-remove docker.io podman runc busybox-static \
        libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc python3-venv python3-dev \
        qemu-system-x86 qemu-utils make
    (not docker.io where Docker CE is installed: it would remove it)
EOF
}

# --- probes -------------------------------------------------------------------

have_cmd() {
    command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]
}

# A Docker Engine is there: its daemon binary, or a local socket that answers _ping.
docker_engine_present() {
    local sock=/var/run/docker.sock
    have_cmd dockerd && return 0
    case "${DOCKER_HOST:-}" in unix://*) sock=${DOCKER_HOST#unix://} ;; esac
    [[ -S "$sock" ]] || return 1
    if command -v curl >/dev/null 2>&1; then
        [[ "$(curl -fsS --max-time 5 --unix-socket "$sock" http://localhost/_ping 2>/dev/null)" == OK ]]
    elif command -v docker >/dev/null 2>&1; then
        timeout 10 docker -H "unix://$sock" version >/dev/null 2>&1
    else
        return 1
    fi
}

dpkg_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]
}

# Is the need behind one PACKAGES line ("pkg probe") already met?
present() { # package, probe
    case "$2" in
        cmd:*) have_cmd "${2#cmd:}" ;;
        path:*) [[ -x "${2#path:}" ]] ;;
        docker) docker_engine_present ;;
        dpkg) dpkg_installed "$1" ;;
        *) die "internal: unknown probe '$2' for $1" ;;
    esac
}

# The packages of these "pkg probe" lines whose need is not met, one a line.
missing_of() {
    local line pkg probe
    for line in "$@"; do
        read -r pkg probe <<<"$line"
        present "$pkg" "$probe" || printf '%s\n' "$pkg"
    done
}

apt_knows() { apt-cache show --no-all-versions "$1" >/dev/null 2>&1; }

# --- apt's plan -----------------------------------------------------------------

# Simulate installing "$@" (nothing changes, no root needed) and print apt's plan;
# die with one line when it is impossible. A package the plan would remove is named
# with what it conflicts with: the install itself runs with --no-remove, but saying
# which engine is in the way is the useful part.
APT_INSTALL=(apt-get install -y -q --no-install-recommends)
show_plan() { # what (for the messages), packages...
    local what=$1 out removed
    shift
    out=$(LC_ALL=C "${APT_INSTALL[@]}" -s "$@" 2>&1) \
        || die "cannot plan $what ($*): $(grep -m1 '^E:' <<<"$out" || tail -n 1 <<<"$out")"
    removed=$(awk '$1 == "Remv" { printf "%s ", $2 }' <<<"$out")
    # shellcheck disable=SC2086  # one word a package
    [[ -z "$removed" ]] || die "$(conflict_line "$out" "$*" $removed)"
    log "plan ($what): apt-get install --no-install-recommends --no-remove $*"
    log "plan ($what): $(grep -c '^Inst ' <<<"$out" || true) packages to install with their dependencies, none to remove"
    # Every name only when asked for the plan: hundreds on a bare machine.
    ((!PLAN_ONLY)) || log "plan ($what): $(awk '$1 == "Inst" { printf "%s ", $2 }' <<<"$out")"
}

# "P conflicts with installed R: ..." for the first removed R, P a planned package that
# R's Conflicts/Breaks name (or, failing that, the packages asked for).
conflict_line() { # apt -s output, packages asked for, removed packages...
    local out=$1 asked=$2 planned removed field name pkg=""
    shift 2
    planned=" $(awk '$1 == "Inst" { printf "%s ", $2 }' <<<"$out")"
    removed=$1
    field=$(dpkg-query -W -f='${Conflicts}, ${Breaks}' "$removed" 2>/dev/null || true)
    for name in $(tr ',|' '  ' <<<"$field" | sed 's/([^)]*)//g; s/:[a-z0-9]*//g'); do
        if [[ "$planned" == *" $name "* ]]; then pkg=$name; break; fi
    done
    [[ -n "$pkg" ]] || pkg="installing $asked"
    printf '%s conflicts with installed %s: apt would remove %s; nothing was changed (the engine that is there is used as it is: make it work, e.g. its dockerd answering on /var/run/docker.sock, or remove %s yourself)' \
        "$pkg" "$removed" "$*" "$removed"
}

# --- guest kernel -------------------------------------------------------------

# The .deb is checked and unpacked in a folder only root can enter, and its hash checked
# against apt's signed index: in a folder others could write to, a local user could swap
# the .deb, choose the guest kernel and have root's tar plant setuid files.

# Refuse a .deb whose SHA256 is not the one apt's index gives.
verify_deb() { # file, expected sha256
    local actual
    actual=$("${SUDO[@]}" sha256sum -- "$1" | awk '{ print $1 }') || die "cannot read $1"
    [[ "$actual" == "$2" ]] \
        || die "$1: SHA256 $actual is not apt's $2; refusing it (set BENCH_KERNEL=/path/to/vmlinuz instead)"
}

# Only ./boot/vmlinuz-* and the modules a guest's NIC needs (like `dpkg -x`, without
# hundreds of MB of other modules), owned by whoever extracts and without the archive's
# mode bits (no setuid from a .deb). The modules: Debian builds virtio and virtio_net
# as modules, which bench packs into the initramfs for `network: user` VMs
# (bench/machines/rootfs.py: virtio_net, net_failover, failover, the virtio bus and
# ring); modules.builtin says which are built in instead (other kernels, e.g. cloud).
# Debian 12's packages ship them under ./lib/modules, Debian 13's (merged /usr) under
# ./usr/lib/modules: each layout is tried (tar fails on a pattern its archive lacks).
MODULE_ROOTS=(./usr/lib/modules ./lib/modules)
net_module_members() { # the archive's modules root
    printf '%s\n' "$1/*/modules.builtin" "$1/*/kernel/drivers/virtio/virtio*.ko*" \
        "$1/*/kernel/drivers/net/virtio_net.ko*" "$1/*/kernel/drivers/net/net_failover.ko*" \
        "$1/*/kernel/net/core/failover.ko*"
}
# The guest's disk (`volume: true`): virtio_blk, and ext4 (which mounts the ext2 the
# guest's busybox mke2fs makes) with what its .modinfo depends on and the crc32c it asks
# the crypto API for at mount (bench/machines/rootfs.py DISK_MODULE_ROOTS). Extracted by
# a tar of their own: a kernel with these built in (modules.builtin) still gets its
# network ones.
disk_module_members() { # the archive's modules root
    printf '%s\n' "$1/*/kernel/drivers/block/virtio_blk.ko*" "$1/*/kernel/fs/ext4/*" \
        "$1/*/kernel/fs/jbd2/*" "$1/*/kernel/fs/mbcache.ko*" "$1/*/kernel/lib/crc16.ko*" \
        "$1/*/kernel/crypto/crc32c_generic.ko*"
}
extract_kernel() { # deb, destination folder
    # shellcheck disable=SC2016  # $1 and $2 are expanded by the inner bash
    local untar='d=$1 to=$2; shift 2; dpkg-deb --fsys-tarfile "$d" | tar -x --no-same-owner --no-same-permissions -C "$to" --wildcards "$@"'
    "${SUDO[@]}" bash -o pipefail -c "$untar" bash "$1" "$2" "./boot/vmlinuz-*" \
        || die "could not extract /boot/vmlinuz-* from $1"
    # A package without them (virtio built in, or modules in another package, as
    # Ubuntu's linux-modules-*) still gives a kernel: bench then says what is missing
    # when a platform asks for network: user.
    local root members net=0 disk=0
    for root in "${MODULE_ROOTS[@]}"; do
        mapfile -t members < <(net_module_members "$root")
        if ((!net)) && "${SUDO[@]}" bash -o pipefail -c "$untar" bash "$1" "$2" "${members[@]}" 2>/dev/null; then
            net=1
        fi
        mapfile -t members < <(disk_module_members "$root")
        if ((!disk)) && "${SUDO[@]}" bash -o pipefail -c "$untar" bash "$1" "$2" "${members[@]}" 2>/dev/null; then
            disk=1
        fi
    done
    ((net)) || log "WARNING: $1 lacks some of the guest's network modules (virtio_net and its bus): VMs get no network: user"
    ((disk)) || log "WARNING: $1 lacks some of the guest's disk modules (virtio_blk, ext4 and its dependencies): unless built in, VMs get no volume: true"
}

# The extracted modules of release $2 from $1/usr/lib/modules or $1/lib/modules ->
# $KERNEL_CACHE_DIR/modules.
install_modules() { # extracted tree, release
    local from=$1/usr/lib/modules/$2 to=$KERNEL_CACHE_DIR/modules/$2
    [[ -d "$from" ]] || from=$1/lib/modules/$2
    [[ -d "$from" ]] || { log "WARNING: $2 has no modules in its package: VMs get no network: user"; return 0; }
    "${SUDO[@]}" rm -rf -- "$to.tmp"
    "${SUDO[@]}" install -d -m 0755 "$KERNEL_CACHE_DIR/modules"
    "${SUDO[@]}" cp -r --no-preserve=mode,ownership -- "$from" "$to.tmp"
    "${SUDO[@]}" chmod -R u=rwX,go=rX -- "$to.tmp"
    "${SUDO[@]}" rm -rf -- "$to"
    "${SUDO[@]}" mv -f -- "$to.tmp" "$to"
}

# Whether a fetched kernel's modules folder $1 has what bench packs: its network modules
# (the folder) and virtio_blk, as a module or built in (modules.builtin).
has_guest_modules() { # modules folder of one release
    [[ -d "$1" ]] || return 1
    [[ -n "$(find "$1/kernel" -name 'virtio_blk.ko*' -print -quit 2>/dev/null)" ]] \
        || grep -qs '/virtio_blk\.ko' "$1/modules.builtin"
}

# The kernel package behind metapackage $1 (download only, not installed) -> the cache.
fetch_kernel() { # metapackage (linux-image-amd64, linux-image-generic)
    local meta=$1 dep version sha256 file tmp vmlinuz name
    apt_update_once
    # linux-image-amd64 / linux-image-generic is a metapackage; the kernel itself is
    # in the versioned package it depends on (e.g. linux-image-6.1.0-28-amd64).
    dep=$(apt-cache depends "$meta" 2>/dev/null \
        | awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [[ -n "$dep" ]] || die "cannot resolve the kernel package behind $meta (apt-cache depends $meta)" \
        "set BENCH_KERNEL=/path/to/vmlinuz or install $meta"
    version=$(apt-cache policy "$dep" | awk '$1 == "Candidate:" { print $2; exit }')
    [[ -n "$version" && "$version" != "(none)" ]] || die "apt has no candidate version of $dep"
    sha256=$(apt-cache show --no-all-versions "$dep=$version" | awk '$1 == "SHA256:" { print $2; exit }')
    [[ "$sha256" =~ ^[0-9a-f]{64}$ ]] || die "apt-cache show $dep=$version gives no SHA256"
    # The exact file apt-get download writes ('URI' file size hash).
    file=$(apt-get download --print-uris "$dep=$version" 2>/dev/null | awk '{ print $2; exit }')
    [[ "$file" =~ ^[A-Za-z0-9.+~%_-]+\.deb$ ]] || die "apt-get download --print-uris $dep=$version names no .deb"
    log "fetching guest kernel from $dep $version (download only, not installed)"
    tmp=$("${SUDO[@]}" mktemp -d) # 0700, its creator's (root's)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "${SUDO[*]} rm -rf -- '$tmp'" EXIT
    # apt-get download drops privileges to _apt, who cannot write into root's 0700 folder:
    # download as root (the hash check below is what makes the file trustworthy).
    "${SUDO[@]}" env -C "$tmp" apt-get download -q -o APT::Sandbox::User=root "$dep=$version" \
        || die "apt-get download $dep=$version failed" "set BENCH_KERNEL=/path/to/vmlinuz instead"
    verify_deb "$tmp/$file" "$sha256"
    "${SUDO[@]}" mkdir "$tmp/x"
    extract_kernel "$tmp/$file" "$tmp/x"
    vmlinuz=$("${SUDO[@]}" find "$tmp/x/boot" -maxdepth 1 -name 'vmlinuz-*' -type f -print -quit)
    [[ -n "$vmlinuz" ]] || die "$file contains no /boot/vmlinuz-*"
    name=$(basename "$vmlinuz")
    # Directories 0755: qemu runs as an unprivileged user and must reach the kernel.
    [[ -d "$CACHE_DIR" ]] || "${SUDO[@]}" install -d -m 0755 "$CACHE_DIR"
    "${SUDO[@]}" install -d -m 0755 "$KERNEL_CACHE_DIR"
    # 0644: libvirt runs qemu as an unprivileged user that must read the kernel.
    "${SUDO[@]}" install -m 0644 "$vmlinuz" "$KERNEL_CACHE_DIR/.$name.tmp"
    "${SUDO[@]}" mv -f "$KERNEL_CACHE_DIR/.$name.tmp" "$KERNEL_CACHE_DIR/$name"
    # Its network modules beside it, where bench looks (KERNEL_FOLDER/modules/RELEASE).
    install_modules "$tmp/x" "${name#vmlinuz-}"
    "${SUDO[@]}" rm -rf -- "$tmp"
    trap - EXIT
    log "guest kernel: $KERNEL_CACHE_DIR/$name"
}

SUDO=()
APT_UPDATED=0
apt_update_once() {
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq || die "apt-get update failed (no access to the package mirror?)"
        APT_UPDATED=1
    fi
}

# Install "$@" as planned; --no-remove: apt stops rather than remove anything.
apt_install() { # packages...
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "${APT_INSTALL[@]}" --no-remove "$@"
}

# Sourced by the tests: the functions only.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

case "${1:-}" in
    "") ;;
    --plan) PLAN_ONLY=1 ;;
    *) die "unknown argument '$1'; usage: $0 [--plan]" ;;
esac

# --- 1. platform checks -------------------------------------------------------

if [[ "$(uname -s)" != Linux ]]; then
    log "ERROR: this host runs $(uname -s); bench's host set-up supports only Linux (Debian or Ubuntu)."
    print_requirements
    exit 1
fi

if [[ ! -r /etc/os-release ]]; then
    log "ERROR: /etc/os-release not found: cannot tell the distribution; only Debian and Ubuntu are supported."
    print_requirements
    exit 1
fi
# shellcheck disable=SC1091
OS_INFO=$(. /etc/os-release && printf '%s\n%s\n%s\n' "${ID:-}" "${ID_LIKE:-}" "${PRETTY_NAME:-${ID:-unknown}}")
{ read -r OS_ID; read -r OS_ID_LIKE; read -r OS_NAME; } <<<"$OS_INFO"
case " $OS_ID $OS_ID_LIKE " in
    *" ubuntu "*) DISTRO=ubuntu ;;
    *" debian "*) DISTRO=debian ;;
    *)
        log "ERROR: unsupported distribution '$OS_NAME' (ID=$OS_ID ID_LIKE=$OS_ID_LIKE); only Debian and Ubuntu (or derivatives) are supported."
        print_requirements
        exit 1
        ;;
esac
for tool in dpkg-query apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found although $OS_NAME is Debian-like; is dpkg/apt installed?"
done

# --- 2. what is missing ------------------------------------------------------

mapfile -t MISSING < <(missing_of "${PACKAGES[@]}")
mapfile -t MISSING_LAB < <(missing_of "${LAB_PACKAGES[@]}")
mapfile -t MISSING_RUNTIMES < <(missing_of "${RUNTIME_PACKAGES[@]}")
if [[ "${BENCH_WORKLOADS:-0}" == 1 || "${CI:-}" == true ]]; then
    mapfile -t MISSING_WORKLOADS < <(missing_of "${WORKLOAD_PACKAGES[@]}")
    MISSING+=(${MISSING_WORKLOADS[@]+"${MISSING_WORKLOADS[@]}"})
fi

# Python: the venv module needs ensurepip, which Debian/Ubuntu ship separately in
# python3-venv (`python3 -m venv --help` succeeds without it, so check the modules).
# A system python also needs its headers (python3-dev) to build libvirt-python.
# For a non-system python (pyenv, conda, ...) apt cannot help: only warn.
PY_NOTES=()
if ! command -v "$PY" >/dev/null 2>&1; then
    if [[ "$PY" == python3 ]]; then
        MISSING+=(python3 python3-venv python3-dev)
    else
        PY_NOTES+=("'$PY' (PYTHON) not found: install it or run with PYTHON=python3")
    fi
else
    # One interpreter start (a pyenv shim alone costs ~0.1 s).
    PY_INFO=$("$PY" - <<'EOF' 2>/dev/null || true
import importlib.util, os, sys, sysconfig
ok_venv = all(importlib.util.find_spec(m) is not None for m in ("venv", "ensurepip"))
inc = sysconfig.get_paths().get("include") or ""
ok_dev = os.path.exists(os.path.join(inc, "Python.h"))
# The distribution's python (also when run from a venv made from it): apt can fix it.
ok_sys = sys.base_prefix == "/usr"
print("venv=%d dev=%d system=%d exe=%s" % (ok_venv, ok_dev, ok_sys, sys.executable))
EOF
)
    PY_REAL=${PY_INFO#*exe=}
    [[ "$PY_INFO" == *exe=* && -n "$PY_REAL" ]] || PY_REAL=$PY
    system_py=0
    [[ "$PY_INFO" == *system=1* ]] && system_py=1
    if [[ "$PY_INFO" != *venv=1* ]]; then
        if ((system_py)); then MISSING+=(python3-venv)
        else PY_NOTES+=("$PY_REAL has no venv/ensurepip module: \`$PY -m venv\` will fail; use another PYTHON=...")
        fi
    fi
    if [[ "$PY_INFO" != *dev=1* ]]; then
        if ((system_py)); then MISSING+=(python3-dev)
        else PY_NOTES+=("$PY_REAL has no Python.h: building libvirt-python will fail")
        fi
    fi
fi

# docker.io only *recommends* apparmor; on a kernel with AppArmor enabled, dockerd
# without apparmor_parser cannot load its docker-default profile and every
# `docker run` fails.
if [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y* ]] \
    && ! have_cmd apparmor_parser; then
    MISSING+=(apparmor)
fi

# Guest kernel.
if [[ "$DISTRO" == ubuntu ]]; then KERNEL_META=linux-image-generic
else KERNEL_META=linux-image-amd64
fi
NEED_KERNEL=1
shopt -s nullglob
if [[ "${BENCH_FORCE_KERNEL_FETCH:-0}" == 1 ]]; then
    log "BENCH_FORCE_KERNEL_FETCH=1: fetching the guest kernel again (testing)"
elif [[ -n "${BENCH_KERNEL:-}" ]]; then
    [[ -f "$BENCH_KERNEL" && -r "$BENCH_KERNEL" ]] \
        || die "BENCH_KERNEL=$BENCH_KERNEL is not a readable file; fix it or unset it to use /boot/vmlinuz-* or a fetched kernel"
    NEED_KERNEL=0
else
    # A kernel fetched before bench packed network modules has none beside it, one
    # fetched before it packed disk modules no virtio_blk: fetched again (its package's
    # modules are what `network: user` and `volume: true` VMs load).
    for f in /boot/vmlinuz-* "$KERNEL_CACHE_DIR"/vmlinuz-*; do
        if [[ -f "$f" && -r "$f" ]] \
            && { [[ "$f" == /boot/* ]] || has_guest_modules "$KERNEL_CACHE_DIR/modules/${f##*/vmlinuz-}"; }; then
            NEED_KERNEL=0; break
        fi
    done
fi
shopt -u nullglob

# --- 3. root ----------------------------------------------------------------

if ((!PLAN_ONLY)) && ((EUID != 0)) \
    && ((${#MISSING[@]} || ${#MISSING_LAB[@]} || ${#MISSING_RUNTIMES[@]} || NEED_KERNEL)); then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo)
    elif ((${#MISSING[@]} || NEED_KERNEL)); then
        log "ERROR: something is missing and installing it needs root (or passwordless sudo); this is user $(id -un)."
        if ((${#MISSING[@]})); then
            log "missing packages: ${MISSING[*]}"
            log "  see what apt would do: $0 --plan"
            log "  as root: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --no-remove ${MISSING[*]}"
        fi
        if ((NEED_KERNEL)); then
            log "no guest kernel (BENCH_KERNEL unset, no readable /boot/vmlinuz-*, nothing in $KERNEL_CACHE_DIR)"
            log "  as root: sudo $0   (fetches $KERNEL_META's kernel into $KERNEL_CACHE_DIR), or set BENCH_KERNEL=/path/to/vmlinuz"
        fi
        log "re-run: sudo $0"
        exit 1
    else
        ((${#MISSING_LAB[@]} == 0)) \
            || log "WARNING: not installing ${MISSING_LAB[*]} (needs root): the SSH lab (remote-host tests) or tests using them cannot run"
        ((${#MISSING_RUNTIMES[@]} == 0)) \
            || log "WARNING: not installing ${MISSING_RUNTIMES[*]} (needs root): \`runtime:\` platforms using them will be refused"
        MISSING_LAB=()
        MISSING_RUNTIMES=()
    fi
fi
MISSING+=(${MISSING_LAB[@]+"${MISSING_LAB[@]}"})

# --- 4. plan, then install ----------------------------------------------------

RUNTIMES=()
if ((${#MISSING[@]} + ${#MISSING_RUNTIMES[@]})); then
    ((PLAN_ONLY)) || apt_update_once
    # Where the release splits docker.io's CLI off, it goes with it.
    if [[ " ${MISSING[*]} " == *" docker.io "* ]]; then
        for pkg in "${DOCKER_EXTRA_PACKAGES[@]}"; do
            if apt_knows "$pkg"; then MISSING+=("$pkg"); fi
        done
    fi
    # Optional runtimes apt does not know are only lost platforms.
    for pkg in ${MISSING_RUNTIMES[@]+"${MISSING_RUNTIMES[@]}"}; do
        if apt_knows "$pkg"; then RUNTIMES+=("$pkg")
        else log "WARNING: $OS_NAME has no package $pkg: \`runtime:\` platforms using it will be refused"
        fi
    done
    # One plan for both, so a conflict among them is seen before anything is installed.
    if ((${#MISSING[@]})); then
        show_plan "bench's engines and tools" "${MISSING[@]}" ${RUNTIMES[@]+"${RUNTIMES[@]}"}
    elif ((${#RUNTIMES[@]})); then
        show_plan "container runtimes" "${RUNTIMES[@]}"
    fi
fi
if ((NEED_KERNEL)); then
    log "plan: guest kernel from $KERNEL_META (downloaded and checked, not installed) into $KERNEL_CACHE_DIR"
fi
if ((PLAN_ONLY)); then
    ((${#MISSING[@]} + ${#MISSING_RUNTIMES[@]} + NEED_KERNEL)) || log "plan: nothing to install"
    exit 0
fi

if ((${#MISSING[@]})); then
    log "installing: ${MISSING[*]}"
    # --no-install-recommends is enough for a working libvirtd + qemu (TCG) and dockerd.
    apt_install "${MISSING[@]}" || die "apt-get install ${MISSING[*]} failed (see the apt output above)"
fi
if ((${#RUNTIMES[@]})); then
    log "installing the container runtimes: ${RUNTIMES[*]}"
    apt_install "${RUNTIMES[@]}" \
        || log "WARNING: apt-get install ${RUNTIMES[*]} failed: \`runtime:\` platforms using them will be refused"
fi

for note in ${PY_NOTES[@]+"${PY_NOTES[@]}"}; do log "WARNING: $note"; done

# --- 5. guest kernel --------------------------------------------------------

if ((NEED_KERNEL)); then
    fetch_kernel "$KERNEL_META"
fi

# --- 6. docker runtimes -----------------------------------------------------

# Register runsc and crun with dockerd (merged into daemon.json: other keys and runtimes
# stay), and reload a running dockerd only when the file changed; a dockerd started
# below reads it anyway. runsc needs --network=none (scripts/docker_runtimes.py).
DAEMON_JSON=${BENCH_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
register_docker_runtimes() {
    local args=() name path result pid comm
    for name in runsc crun; do
        path=$(command -v "$name" 2>/dev/null) || path=/usr/bin/$name
        [[ -x "$path" ]] && args+=("$name=$path")
    done
    ((${#args[@]})) || return 0
    result=$("${SUDO[@]}" python3 "$SCRIPT_DIR/docker_runtimes.py" "$DAEMON_JSON" "${args[@]}") \
        || die "could not register ${args[*]} in $DAEMON_JSON (see above); fix the file or register them by hand"
    [[ "$result" == changed ]] || return 0
    log "registered with dockerd in $DAEMON_JSON: ${args[*]}"
    if [[ "$DAEMON_JSON" != /etc/docker/daemon.json ]]; then
        log "not reloading dockerd: it reads /etc/docker/daemon.json, not $DAEMON_JSON"
        return 0
    fi
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 \
        && systemctl is-active --quiet docker.service 2>/dev/null; then
        log "reloading docker.service"
        "${SUDO[@]}" systemctl reload docker.service || log "WARNING: reload failed: restart dockerd to use the new runtimes"
        return 0
    fi
    # The pid file names this host's dockerd (not one of a nested container's).
    # (dockerd writes it without a trailing newline: `read` would fail on it.)
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 0
    { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 0
    if [[ "$comm" == dockerd ]]; then
        log "reloading dockerd (SIGHUP to $pid)"
        "${SUDO[@]}" kill -HUP "$pid"
    fi
}

case "${DOCKER_HOST:-unix://}" in
    unix://*) register_docker_runtimes ;;
    *) log "DOCKER_HOST=$DOCKER_HOST is not local: not registering runtimes" ;;
esac

# --- 7. engines -------------------------------------------------------------

if [[ "${BENCH_SKIP_ENGINES:-0}" != 1 ]]; then
    "${SUDO[@]}" "$SCRIPT_DIR/start-engines.sh"
fi

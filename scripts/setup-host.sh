#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host for bench: install the container and VM engines,
# the build prerequisites for libvirt-python, a guest kernel, then start the engines.
#
# Idempotent: when nothing is missing it only runs a few dpkg-query/stat checks
# (well under 2 s) and never touches apt.
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
#   BENCH_SKIP_SSH_LAB        =1 (read by start-engines.sh): no loopback sshd, no second
#                             dockerd; openssh-server is still installed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# Same place bench looks for it (bench/paths.py: $BENCH_CACHE_DIR, as root /var/cache/bench).
CACHE_DIR=${BENCH_CACHE_DIR:-/var/cache/bench}
KERNEL_CACHE_DIR=$CACHE_DIR/kernel
PY=${PYTHON:-python3}

# Packages bench needs on the host (Debian and Ubuntu use the same names).
PACKAGES=(
    docker.io              # Docker Engine (dockerd, containerd, runc)
    podman                 # podman, whose REST service (`podman system service`) bench drives
    busybox-static         # rootfs for the locally built container/guest images
    libvirt-daemon-system  # libvirtd, virtlogd, QEMU driver
    libvirt-clients        # virsh
    libvirt-dev            # headers for `pip install libvirt-python`
    pkg-config             # libvirt-python's build finds libvirt through it
    gcc                    # libvirt-python is built from source
    qemu-system-x86        # the VM engine (TCG or KVM)
    qemu-utils             # qemu-img
    make                   # the Makefile is the entry point (absent on minimal images)
)

# Other OCI runtimes for docker platforms' `runtime:` key. Optional: a distribution
# release without them only loses those platforms (a warning, not an error).
RUNTIME_PACKAGES=(
    runsc                  # gVisor: a sandboxed container runtime (`runtime: runsc`)
    crun                   # `runtime: crun` (works on pure cgroup v1 or v2 hosts only)
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
  - Docker Engine (dockerd) reachable on /var/run/docker.sock
  - podman, its REST service on /run/podman/podman.sock (`podman system service`)
  - libvirt (libvirtd + virtlogd, virsh) with the QEMU driver, and qemu-system-x86_64 + qemu-img
  - a static busybox binary (to build the container/guest images)
  - gcc, pkg-config and the libvirt development headers (pip builds libvirt-python)
  - python3 with the venv module (and Python headers for a system python)
  - a Linux kernel image for the guests (/boot/vmlinuz-*, or set BENCH_KERNEL=/path/to/vmlinuz)
  On Debian/Ubuntu, as root:
    apt-get update
    apt-get install -y --no-install-recommends docker.io podman busybox-static libvirt-daemon-system \
        libvirt-clients libvirt-dev pkg-config gcc python3-venv python3-dev qemu-system-x86 qemu-utils make
EOF
}

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

# One dpkg-query for all packages (it exits non-zero when some are unknown, which is fine).
declare -A STATUS=()
while IFS=' ' read -r pkg status; do
    STATUS[$pkg]=$status
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" "${RUNTIME_PACKAGES[@]}" \
    2>/dev/null || true)
MISSING=()
for pkg in "${PACKAGES[@]}"; do
    [[ "${STATUS[$pkg]:-}" == ii* ]] || MISSING+=("$pkg")
done
MISSING_RUNTIMES=()
for pkg in "${RUNTIME_PACKAGES[@]}"; do
    [[ "${STATUS[$pkg]:-}" == ii* ]] || MISSING_RUNTIMES+=("$pkg")
done

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

# Guest kernel.
if [[ "$DISTRO" == ubuntu ]]; then KERNEL_META=linux-image-generic
else KERNEL_META=linux-image-amd64
fi
NEED_KERNEL=1
KERNEL_REASON=""
shopt -s nullglob
if [[ "${BENCH_FORCE_KERNEL_FETCH:-0}" == 1 ]]; then
    log "BENCH_FORCE_KERNEL_FETCH=1: fetching the guest kernel again (testing)"
elif [[ -n "${BENCH_KERNEL:-}" ]]; then
    [[ -f "$BENCH_KERNEL" && -r "$BENCH_KERNEL" ]] \
        || die "BENCH_KERNEL=$BENCH_KERNEL is not a readable file; fix it or unset it to use /boot/vmlinuz-* or a fetched kernel"
    NEED_KERNEL=0
else
    for f in /boot/vmlinuz-* "$KERNEL_CACHE_DIR"/vmlinuz-*; do
        if [[ -f "$f" && -r "$f" ]]; then NEED_KERNEL=0; break; fi
    done
fi
shopt -u nullglob
if ((NEED_KERNEL)); then
    KERNEL_REASON="no guest kernel (BENCH_KERNEL unset, no readable /boot/vmlinuz-*, nothing in $KERNEL_CACHE_DIR)"
fi

# --- 3. root ----------------------------------------------------------------

SUDO=()
if ((EUID != 0)) && ((${#MISSING[@]} || NEED_KERNEL)); then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo)
    else
        log "ERROR: something is missing and installing it needs root (or passwordless sudo); this is user $(id -un)."
        if ((${#MISSING[@]})); then
            log "missing packages: ${MISSING[*]}"
            log "  as root: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${MISSING[*]}"
        fi
        if ((NEED_KERNEL)); then
            log "$KERNEL_REASON"
            log "  as root: sudo $0   (fetches $KERNEL_META's kernel into $KERNEL_CACHE_DIR), or set BENCH_KERNEL=/path/to/vmlinuz"
        fi
        log "re-run: sudo $0"
        exit 1
    fi
fi

# --- 4. install ---------------------------------------------------------------

APT_UPDATED=0
apt_update_once() {
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -qq || die "apt-get update failed (no access to the package mirror?)"
        APT_UPDATED=1
    fi
}

if ((${#MISSING[@]})); then
    apt_update_once
    log "installing: ${MISSING[*]}"
    # --no-install-recommends is enough for a working libvirtd + qemu (TCG) and dockerd;
    # see the recommends handled explicitly below.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${MISSING[@]}" \
        || die "apt-get install ${MISSING[*]} failed (see the apt output above)"
fi

# docker.io only *recommends* apparmor; on a kernel with AppArmor enabled, dockerd
# without apparmor_parser cannot load its docker-default profile and every
# `docker run` fails. Install it only in that case.
if [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y* ]] \
    && ! command -v apparmor_parser >/dev/null 2>&1 \
    && [[ ! -x /sbin/apparmor_parser ]]; then
    apt_update_once
    log "AppArmor is enabled in the kernel: installing apparmor (needed by dockerd)"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends apparmor || die "apt-get install apparmor failed"
fi

if ((${#MISSING_RUNTIMES[@]})); then
    if ((EUID != 0)) && ((${#SUDO[@]} == 0)); then
        log "WARNING: not installing ${MISSING_RUNTIMES[*]} (needs root): \`runtime:\` platforms using them will be refused"
    else
        apt_update_once
        log "installing the container runtimes: ${MISSING_RUNTIMES[*]}"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${MISSING_RUNTIMES[@]}" \
            || log "WARNING: apt-get install ${MISSING_RUNTIMES[*]} failed: \`runtime:\` platforms using them will be refused"
    fi
fi


# --- 4b. ssh lab ------------------------------------------------------------

# openssh-server for the SSH lab that scripts/start-engines.sh starts (a loopback-only
# sshd of its own, for the remote-host tests). Its own block: not needed to measure
# local engines, so without root it is a warning, not an error.
SSH_LAB_PACKAGES=(openssh-server)
install_ssh_lab() {
    local missing=() pkg
    for pkg in "${SSH_LAB_PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" == ii* ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ((EUID != 0)) && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
        log "WARNING: not installing ${missing[*]} (needs root): the SSH lab (remote-host tests) cannot start"
        return 0
    fi
    ((EUID == 0)) || SUDO=(sudo)
    apt_update_once
    log "installing for the SSH lab: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed (see the apt output above)"
}
install_ssh_lab

# --- 4c. test packages --------------------------------------------------------

# Headless Chromium for tests/integration/test_report_browser.py (report.html at 1400
# and 400 px). Only the tests need it; in CI a missing one fails that test.
TEST_PACKAGES=(chromium)
install_test_packages() {
    local missing=() pkg
    for pkg in "${TEST_PACKAGES[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" == ii* ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if ((EUID != 0)) && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
        log "WARNING: not installing ${missing[*]} (needs root): the report's browser test cannot run"
        return 0
    fi
    ((EUID == 0)) || SUDO=(sudo)
    apt_update_once
    log "installing for the tests: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed (see the apt output above)"
}
install_test_packages

for note in ${PY_NOTES[@]+"${PY_NOTES[@]}"}; do log "WARNING: $note"; done

# --- 5. guest kernel --------------------------------------------------------

fetch_kernel() {
    local dep tmp deb vmlinuz
    apt_update_once
    # linux-image-amd64 / linux-image-generic is a metapackage; the kernel itself is
    # in the versioned package it depends on (e.g. linux-image-6.1.0-28-amd64).
    dep=$(apt-cache depends "$KERNEL_META" 2>/dev/null \
        | awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [[ -n "$dep" ]] || die "cannot resolve the kernel package behind $KERNEL_META (apt-cache depends $KERNEL_META)" \
        "set BENCH_KERNEL=/path/to/vmlinuz or install $KERNEL_META"
    log "fetching guest kernel from $dep (download only, not installed)"
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf -- '$tmp'" EXIT
    # apt-get download drops privileges to _apt: let it write into the directory.
    chmod 0777 "$tmp"
    (cd "$tmp" && "${SUDO[@]}" apt-get download -q "$dep") \
        || die "apt-get download $dep failed" "set BENCH_KERNEL=/path/to/vmlinuz instead"
    deb=$(find "$tmp" -maxdepth 1 -name '*.deb' -print -quit)
    [[ -n "$deb" ]] || die "apt-get download $dep produced no .deb"
    mkdir -p "$tmp/x"
    # Like `dpkg -x`, but only ./boot: skips writing hundreds of MB of modules.
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' \
        || die "could not extract /boot/vmlinuz-* from $deb"
    vmlinuz=$(find "$tmp/x/boot" -maxdepth 1 -name 'vmlinuz-*' -type f -print -quit)
    [[ -n "$vmlinuz" ]] || die "$deb contains no /boot/vmlinuz-*"
    # Directories 0755: qemu runs as an unprivileged user and must reach the kernel.
    [[ -d "$CACHE_DIR" ]] || "${SUDO[@]}" install -d -m 0755 "$CACHE_DIR"
    "${SUDO[@]}" install -d -m 0755 "$KERNEL_CACHE_DIR"
    # 0644: libvirt runs qemu as an unprivileged user that must read the kernel.
    "${SUDO[@]}" install -m 0644 "$vmlinuz" "$KERNEL_CACHE_DIR/.$(basename "$vmlinuz").tmp"
    "${SUDO[@]}" mv -f "$KERNEL_CACHE_DIR/.$(basename "$vmlinuz").tmp" "$KERNEL_CACHE_DIR/$(basename "$vmlinuz")"
    rm -rf -- "$tmp"
    trap - EXIT
    log "guest kernel: $KERNEL_CACHE_DIR/$(basename "$vmlinuz")"
}

if ((NEED_KERNEL)); then
    fetch_kernel
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

#!/usr/bin/env bash
# Start the engines bench talks to, unless they already answer:
#   - Docker Engine (dockerd) on /var/run/docker.sock (or DOCKER_HOST=unix://...)
#   - podman's REST service (`podman system service`) on /run/podman/podman.sock
#     (or CONTAINER_HOST=unix://...); a unix socket only, never TCP; its default OCI
#     runtime is BENCH_PODMAN_RUNTIME (default runc)
#   - libvirt: virtlogd + libvirtd, checked through qemu:///system
# With systemd as PID 1 and the unit installed it uses systemctl; otherwise
# (containers, CI sandboxes) it starts the daemons directly in the background.
# Then waits, at most BENCH_ENGINE_TIMEOUT seconds (default 120), until all answer.
# Idempotent: when all already answer it only runs three quick probes.
#
# Then, as root, the SSH lab that tests remote hosts on this one machine (see the block
# "ssh lab" at the end; BENCH_SKIP_SSH_LAB=1 skips it): a test key, an sshd on
# 127.0.0.1:22, a second independent dockerd on unix:///run/docker2.sock and a second
# sshd on 127.0.0.1:2222 whose sessions reach that dockerd (DOCKER_HOST).
set -euo pipefail
# The daemons started below inherit this directory: one started from a checkout that is
# later deleted breaks (conmon's "Failed to get working directory" fails every podman
# container). Nothing below uses a relative path.
cd /

# The wait ends as soon as every engine answers; the long default is for a dockerd
# restarted with hundreds of containers to clean up (after a crash or a deadlock in a
# density run it took over 30 s before answering).
TIMEOUT=${BENCH_ENGINE_TIMEOUT:-120}
DOCKERD_LOG=/var/log/bench-dockerd.log
LIBVIRTD_LOG=/var/log/bench-libvirtd.log
VIRTLOGD_LOG=/var/log/bench-virtlogd.log
PODMAN_LOG=/var/log/bench-podman.log
KVM_NODE=/dev/kvm
LIBVIRT_URI=qemu:///system

log() { printf 'start-engines: %s\n' "$*" >&2; }
die() {
    local line
    for line in "$@"; do printf 'start-engines: ERROR: %s\n' "$line" >&2; done
    exit 1
}

SUDO=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo)
    fi
fi

# Docker socket: honour DOCKER_HOST only when it is a local unix socket.
MANAGE_DOCKER=1
DOCKER_SOCK=/var/run/docker.sock
case "${DOCKER_HOST:-}" in
    "") ;;
    unix://*) DOCKER_SOCK=${DOCKER_HOST#unix://} ;;
    *)
        log "DOCKER_HOST=$DOCKER_HOST is not local: not managing a local dockerd"
        MANAGE_DOCKER=0
        ;;
esac

# podman's socket: honour CONTAINER_HOST (podman's own variable) only when it is local.
MANAGE_PODMAN=1
PODMAN_SOCK=/run/podman/podman.sock
case "${CONTAINER_HOST:-}" in
    "") ;;
    unix://*) PODMAN_SOCK=${CONTAINER_HOST#unix://} ;;
    *)
        log "CONTAINER_HOST=$CONTAINER_HOST is not local: not managing a local podman service"
        MANAGE_PODMAN=0
        ;;
esac
PODMAN_PIDFILE=$(dirname -- "$PODMAN_SOCK")/bench-podman.pid
# The service's default OCI runtime. podman 4.3's API ignores a container's own runtime
# (podman issue #28429): its containers all run under this one. runc is bench's default:
# crun, podman's, fails on hybrid-cgroup hosts.
PODMAN_RUNTIME=${BENCH_PODMAN_RUNTIME:-runc}

have() { command -v "$1" >/dev/null 2>&1; }

docker_ok() {
    if have curl && [[ -S "$DOCKER_SOCK" ]]; then
        [[ "$("${SUDO[@]}" curl -fsS --max-time 5 --unix-socket "$DOCKER_SOCK" http://localhost/_ping 2>/dev/null)" == OK ]]
    elif have docker; then
        "${SUDO[@]}" timeout 10 docker -H "unix://$DOCKER_SOCK" info >/dev/null 2>&1
    else
        return 1
    fi
}

podman_ok() {
    if have curl && [[ -S "$PODMAN_SOCK" ]]; then
        [[ "$("${SUDO[@]}" curl -fsS --max-time 5 --unix-socket "$PODMAN_SOCK" http://d/libpod/_ping 2>/dev/null)" == OK ]]
    elif have podman && [[ -S "$PODMAN_SOCK" ]]; then
        "${SUDO[@]}" timeout 10 podman --url "unix://$PODMAN_SOCK" version >/dev/null 2>&1
    else
        return 1
    fi
}

libvirt_ok() {
    have virsh && "${SUDO[@]}" timeout 10 virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1
}

# systemd as PID 1 (the check sd_booted() uses) and a unit file for $1?
use_systemd_for() {
    [[ -d /run/systemd/system ]] && have systemctl \
        && [[ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]]
}

# Is the daemon that owns these sockets alive? Read its pid file rather than search
# process names: no procps needed, and daemons of nested containers (visible in the
# host's /proc) are not mistaken for this host's.
declare -A PIDFILE=(
    [dockerd]=/var/run/docker.pid
    [libvirtd]=/run/libvirtd.pid
    [virtlogd]=/run/virtlogd.pid
    [podman]=$PODMAN_PIDFILE  # written by start_podman below: the service writes none
)
running() {
    local pid comm
    [[ -r "${PIDFILE[$1]}" ]] || return 1
    { read -r pid <"${PIDFILE[$1]}"; } 2>/dev/null || [[ -n "${pid:-}" ]] || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
    [[ "$comm" == "$1" ]]
}

require_root() { # daemon, how it was probed
    ((EUID == 0)) || ((${#SUDO[@]})) \
        || die "$1 does not answer on $2 for user $(id -un): either it is not running (starting it needs root: sudo $0)" \
            "or this user may not use it (root, or membership in the ${3} group, is needed)"
}

show_log() {
    if [[ -r "$1" && -s "$1" ]]; then
        log "last lines of $1:"
        tail -n 10 "$1" | sed 's/^/    /' >&2 || true
    fi
}

# --- docker -------------------------------------------------------------------

start_docker() {
    if use_systemd_for docker.service; then
        log "starting docker.service (systemctl)"
        "${SUDO[@]}" systemctl start docker.service
        return
    fi
    have dockerd || die "dockerd not found: install docker.io (scripts/setup-host.sh does)"
    if running dockerd; then
        log "dockerd is running but not answering yet; waiting for it"
        return
    fi
    # cgroup v1 hosts without systemd need the hierarchies mounted (docker.io recommends cgroupfs-mount).
    if [[ ! -e /sys/fs/cgroup/cgroup.controllers ]] && ! grep -q ' /sys/fs/cgroup/' /proc/self/mounts \
        && have cgroupfs-mount; then
        log "mounting cgroup hierarchies (cgroupfs-mount)"
        "${SUDO[@]}" cgroupfs-mount || true
    fi
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: keep dockerd alive when the caller's process group (make, CI step) ends.
    # shellcheck disable=SC2016  # $1 is expanded by the inner sh
    "${SUDO[@]}" sh -c 'setsid nohup dockerd >"$1" 2>&1 </dev/null &' sh "$DOCKERD_LOG"
}

# --- podman -------------------------------------------------------------------

start_podman() {
    # Started directly also under systemd: the packaged podman.socket unit cannot be
    # given a default runtime (an already active one answers, and is used as it is).
    have podman || die "podman not found: install podman (scripts/setup-host.sh does)"
    if running podman; then
        log "podman system service is running but not answering yet; waiting for it"
        return
    fi
    # The socket's directory must exist first (/run/podman is not made by the service).
    "${SUDO[@]}" mkdir -p "$(dirname -- "$PODMAN_SOCK")"
    log "starting podman system service (unix://$PODMAN_SOCK, log: $PODMAN_LOG)"
    # --runtime: see PODMAN_RUNTIME. --time=0: never exit when idle. setsid: outlive the
    # caller's process group. The shell writes its pid, then becomes podman (exec): the
    # pid file names the service.
    # shellcheck disable=SC2016  # $1..$4 are expanded by the inner sh
    "${SUDO[@]}" sh -c 'setsid sh -c '\''echo $$ >"$2"; exec podman --runtime "$3" system service --time=0 "unix://$1"'\'' sh "$1" "$2" "$3" >"$4" 2>&1 </dev/null &' \
        sh "$PODMAN_SOCK" "$PODMAN_PIDFILE" "$PODMAN_RUNTIME" "$PODMAN_LOG"
}

# --- libvirt ------------------------------------------------------------------

# Hosts without udev (containers, Firecracker-style VMs) leave /dev/kvm as root:root 0600.
# libvirt then probes QEMU's capabilities with CAP_DAC_OVERRIDE (KVM found) but checks
# /dev/kvm as the qemu user (KVM not usable), finds its cached capabilities stale on every
# look-up and re-probes QEMU several times per domain start: createXML took 40-90 s
# instead of 0.3 s here. Give the node the group udev gives it (libvirt-qemu is in kvm).
# Only before libvirtd starts: the ctime change would alter a running daemon's behaviour.
kvm_node_needs_group() {
    local mode group
    [[ -c $KVM_NODE ]] && getent group kvm >/dev/null 2>&1 || return 1
    read -r mode group < <(stat -c '%a %G' "$KVM_NODE") || return 1
    [[ "$group" != kvm ]] || (( (8#$mode & 8#060) != 8#060 ))
}

fix_kvm_node() {
    kvm_node_needs_group || return 0
    log "$KVM_NODE is $(stat -c '%U:%G %a' "$KVM_NODE"): giving it group kvm, mode 0660 (as udev would)"
    if ! { "${SUDO[@]}" chgrp kvm "$KVM_NODE" && "${SUDO[@]}" chmod 0660 "$KVM_NODE"; }; then
        log "could not change $KVM_NODE; libvirt will re-probe QEMU on every domain start"
    fi
}

start_libvirt() {
    if use_systemd_for libvirtd.service; then
        "${SUDO[@]}" systemctl is-active --quiet libvirtd.service || fix_kvm_node
        if use_systemd_for virtlogd.socket; then
            "${SUDO[@]}" systemctl start virtlogd.socket || true
        fi
        log "starting libvirtd.service (systemctl)"
        "${SUDO[@]}" systemctl start libvirtd.service
        return
    fi
    have libvirtd || die "libvirtd not found: install libvirt-daemon-system (scripts/setup-host.sh does)"
    if ! running virtlogd; then
        have virtlogd || die "virtlogd not found: install libvirt-daemon-system"
        log "starting virtlogd (log: $VIRTLOGD_LOG)"
        "${SUDO[@]}" env LIBVIRT_LOG_OUTPUTS="3:file:$VIRTLOGD_LOG" virtlogd -d \
            || { show_log "$VIRTLOGD_LOG"; die "virtlogd -d failed; see $VIRTLOGD_LOG"; }
    fi
    if running libvirtd; then
        log "libvirtd is running but not answering yet; waiting for it"
        return
    fi
    fix_kvm_node
    log "starting libvirtd (log: $LIBVIRTD_LOG)"
    "${SUDO[@]}" env LIBVIRT_LOG_OUTPUTS="3:file:$LIBVIRTD_LOG" libvirtd -d \
        || { show_log "$LIBVIRTD_LOG"; die "libvirtd -d failed; see $LIBVIRTD_LOG"; }
}

# --- main ---------------------------------------------------------------------

WAIT_DOCKER=0
WAIT_LIBVIRT=0
WAIT_PODMAN=0
if ((MANAGE_DOCKER)) && ! docker_ok; then
    require_root dockerd "$DOCKER_SOCK" docker
    start_docker
    WAIT_DOCKER=1
fi
if ((MANAGE_PODMAN)) && ! podman_ok; then
    require_root podman "$PODMAN_SOCK" root
    start_podman
    WAIT_PODMAN=1
fi
if ! libvirt_ok; then
    require_root libvirtd "$LIBVIRT_URI" libvirt
    start_libvirt
    WAIT_LIBVIRT=1
elif kvm_node_needs_group; then
    log "WARNING: /dev/kvm is $(stat -c '%U:%G %a' "$KVM_NODE") and libvirtd is already running:" \
        "it re-probes QEMU on every domain start (VM create_s of tens of seconds)." \
        "Fix: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (takes effect at once)."
fi

# Report why an engine did not come up, with the tail of its log.
report_failure() { # name, where it should answer, systemd unit, log file
    local name=$1 where=$2 unit=$3 logfile=$4
    if use_systemd_for "$unit"; then
        log "ERROR: $name did not answer on $where; see: systemctl status $unit; journalctl -u $unit"
        return
    fi
    if running "$name"; then
        log "ERROR: $name is running but did not answer on $where within ${TIMEOUT}s; log: $logfile"
    else
        log "ERROR: $name exited without answering on $where; log: $logfile"
    fi
    show_log "$logfile"
}

if ((WAIT_DOCKER || WAIT_LIBVIRT || WAIT_PODMAN)); then
    started=$SECONDS
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        if ((WAIT_DOCKER)) && docker_ok; then
            log "dockerd is up ($DOCKER_SOCK, $((SECONDS - started))s)"
            WAIT_DOCKER=0
        fi
        if ((WAIT_LIBVIRT)) && libvirt_ok; then
            log "libvirtd is up ($LIBVIRT_URI, $((SECONDS - started))s)"
            WAIT_LIBVIRT=0
        fi
        if ((WAIT_PODMAN)) && podman_ok; then
            log "podman is up ($PODMAN_SOCK, $((SECONDS - started))s)"
            WAIT_PODMAN=0
        fi
        ((WAIT_DOCKER || WAIT_LIBVIRT || WAIT_PODMAN)) || break
        # Give up at the deadline, or early when a daemon we started directly has died.
        failed=0
        if ((SECONDS >= deadline)); then
            failed=1
        elif ((SECONDS - started >= 3)); then
            if ((WAIT_DOCKER)) && ! use_systemd_for docker.service && ! running dockerd; then failed=1; fi
            if ((WAIT_LIBVIRT)) && ! use_systemd_for libvirtd.service && ! running libvirtd; then failed=1; fi
            if ((WAIT_PODMAN)) && ! running podman; then failed=1; fi
        fi
        if ((failed)); then
            ((WAIT_DOCKER)) && report_failure dockerd "$DOCKER_SOCK" docker.service "$DOCKERD_LOG"
            ((WAIT_LIBVIRT)) && report_failure libvirtd "$LIBVIRT_URI" libvirtd.service "$LIBVIRTD_LOG"
            ((WAIT_PODMAN)) && report_failure podman "$PODMAN_SOCK" none "$PODMAN_LOG"  # never a systemd unit
            exit 1
        fi
        sleep 0.5
    done
fi

# --- ssh lab: loopback sshd + a second dockerd (remote hosts, tested on this one) --------
# bench's SSH Host and remote engines are tested against this machine as if it were
# another: an sshd bound to 127.0.0.1 only (root, by key only), a key made for the tests,
# and a second, independent dockerd (its own socket, data, state and pid file; no TCP, no
# bridge, no iptables) that a second loopback sshd on port 2222 hands to its sessions as
# DOCKER_HOST, so `ssh://root@127.0.0.1:2222` is truly a different engine.
# The user's own keys, known_hosts and ssh config are only appended to, once.

SSH_LAB_DIR=/run/bench-ssh             # generated sshd configs (tmpfs: made anew each boot)
SSH_LAB_KEY=${BENCH_SSH_TEST_KEY:-/root/.ssh/bench_test_ed25519}
SSHD_LOG=/var/log/bench-sshd.log
SSHD2_LOG=/var/log/bench-sshd2.log
SSHD_PIDFILE=/run/bench-sshd.pid
SSHD2_PIDFILE=/run/bench-sshd2.pid
DOCKERD2_LOG=/var/log/bench-dockerd2.log
DOCKER2_SOCK=/run/docker2.sock
DOCKER2_PIDFILE=/run/docker2.pid
DOCKER2_CONFIG=$SSH_LAB_DIR/docker2-daemon.json

# A daemon of ours alive? By its pid file and its /proc/<pid>/comm, as running() does.
ssh_lab_alive() { # pidfile, comm
    local pid comm
    { read -r pid <"$1"; } 2>/dev/null || [[ -n "${pid:-}" ]] || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
    [[ "$comm" == "$2" ]]
}

# Something answers SSH on 127.0.0.1:PORT (the keys it shows are not kept: whose it is,
# ssh_lab_owns_port says).
sshd_answers() { # port
    have ssh-keyscan && [[ -n "$(ssh-keyscan -T 3 -p "$1" 127.0.0.1 2>/dev/null)" ]]
}

# Is every socket that takes connections to 127.0.0.1:PORT held by the lab's sshd, the pid
# in its pid file? Asked of the kernel: the inodes of the sockets listening there
# (/proc/net/tcp, tcp6: on 127.0.0.1 in either byte order, 0.0.0.0, ::, ::ffff:127.0.0.1)
# among that process's descriptors. Any user may listen on 2222, and say anything there.
ssh_lab_owns_port() { # port, pidfile
    local pid inodes inode fd sockets='' tables=(/proc/net/tcp)
    ssh_lab_alive "$2" sshd || return 1
    read -r pid <"$2" || [[ -n "${pid:-}" ]] || return 1
    [[ -r /proc/net/tcp6 ]] && tables+=(/proc/net/tcp6)
    inodes=$(awk -v port="$(printf '%04X' "$1")" '$4 == "0A" && $2 ~ ("^(0+|0100007F|7F000001|0000000000000000FFFF00000100007F|00000000000000000000FFFF7F000001):" port "$") { print $10 }' "${tables[@]}")
    [[ -n "$inodes" ]] || return 1
    for fd in /proc/"$pid"/fd/*; do
        sockets+=" $(readlink "$fd" 2>/dev/null || true) "
    done
    for inode in $inodes; do
        [[ "$sockets" == *" socket:[$inode] "* ]] || return 1
    done
}

# Whoever answers on a lab port must be the lab's own sshd. The pid file is written just
# after the socket is bound: a moment's grace. Otherwise, on 22, a host's own sshd is
# used with a warning (it lets the lab key in from loopback only, restricted, as ours
# does); on 2222 it is an error: the remote-host tests' root sessions and their second
# dockerd would be whatever that process is.
ssh_lab_check_listener() { # port, pidfile, warn|die (when it is not the lab's)
    local tries=5
    until ssh_lab_owns_port "$1" "$2"; do
        ((--tries)) || break
        sleep 0.2
    done
    ((tries)) && return 0
    if [[ "$3" == warn ]]; then
        log "WARNING: 127.0.0.1:$1 is answered by an sshd bench did not start (not the pid in $2): the lab uses it, with that sshd's own settings"
    else
        die "127.0.0.1:$1 is answered by a process that is not the lab's sshd (the pid in $2): stop it (ss -ltnp 'sport = :$1' names it), then run scripts/start-engines.sh again"
    fi
}

docker2_ok() {
    [[ -S "$DOCKER2_SOCK" ]] || return 1
    if have curl; then
        [[ "$(curl -fsS --max-time 5 --unix-socket "$DOCKER2_SOCK" http://localhost/_ping 2>/dev/null)" == OK ]]
    else
        timeout 10 docker -H "unix://$DOCKER2_SOCK" info >/dev/null 2>&1
    fi
}

# The test key, in root's authorized_keys and named for 127.0.0.1 in root's ssh config
# (so the docker SDK's paramiko and bench's SSH Host find it), each added once. The key
# has no passphrase: its authorized_keys line lets it in from loopback only, with no
# forwarding or terminal (`restrict`), so a host's own sshd on 0.0.0.0:22 does not let
# it log in as root from elsewhere. The bare line an older set-up wrote is replaced where
# it stands; every other line stays as it is (one holding the key with options of its
# own is someone's choice: named in a warning, not edited).
ssh_lab_key() {
    local ssh_dir pub bare config auth line options='from="127.0.0.1,::1",restrict'
    ssh_dir=$(dirname "$SSH_LAB_KEY")
    install -d -m 0700 "$ssh_dir"
    if [[ ! -f "$SSH_LAB_KEY" ]]; then
        log "making the SSH test key $SSH_LAB_KEY"
        ssh-keygen -q -t ed25519 -N '' -C "bench-test@$(hostname)" -f "$SSH_LAB_KEY"
    fi
    pub=$(cut -d' ' -f1,2 "$SSH_LAB_KEY.pub")
    bare=$(cat "$SSH_LAB_KEY.pub")
    line="$options $bare"
    auth=${BENCH_SSH_AUTHORIZED_KEYS:-$ssh_dir/authorized_keys}
    touch "$auth"
    chmod 0600 "$auth"
    if grep -F "$pub" "$auth" | grep -qvxF -e "$bare" -e "$line"; then
        log "WARNING: $auth holds the lab key $SSH_LAB_KEY.pub with options bench did not write: left as it is"
    fi
    if ! grep -qxF "$line" "$auth" || grep -qxF "$bare" "$auth"; then
        log "adding the test key to $auth (loopback only, restricted)"
        # The first bare line becomes the restricted one, later copies go; else appended.
        BARE=$bare LINE=$line awk '
            $0 == ENVIRON["BARE"] || $0 == ENVIRON["LINE"] { if (!done++) print ENVIRON["LINE"]; next }
            { print }
            END { if (!done) print ENVIRON["LINE"] }' "$auth" >"$auth.bench-tmp"
        chmod 0600 "$auth.bench-tmp"
        mv -f "$auth.bench-tmp" "$auth"
    fi
    config=$ssh_dir/config
    if ! grep -qF "IdentityFile $SSH_LAB_KEY" "$config" 2>/dev/null; then
        log "naming the test key for 127.0.0.1 in $config"
        [[ -s "$config" ]] && printf '\n' >>"$config"
        printf '%s\n' "# bench's loopback test sshd (scripts/start-engines.sh)" \
            "Host 127.0.0.1" "    IdentityFile $SSH_LAB_KEY" >>"$config"
        chmod 0600 "$config"
    fi
}

# One sshd of ours: loopback only, root by key only, its own pid file; extra lines follow.
write_sshd_config() { # file, port, pidfile, extra lines...
    local file=$1 port=$2 pidfile=$3 key
    shift 3
    {
        printf '%s\n' "# Written by bench's scripts/start-engines.sh: a loopback sshd for the tests." \
            "Port $port" "ListenAddress 127.0.0.1" "PidFile $pidfile" \
            "PermitRootLogin prohibit-password" "PubkeyAuthentication yes" \
            "PasswordAuthentication no" "KbdInteractiveAuthentication no" "UsePAM no" \
            "AuthorizedKeysFile .ssh/authorized_keys" "X11Forwarding no" "AllowTcpForwarding no" \
            "AllowUsers root" \
            "Subsystem sftp internal-sftp" \
            "# docker's ssh:// carries every API call in flight and every attached console as" \
            "# a session of one connection: the default 10 caps a step at a few instances." \
            "MaxSessions 256"
        for key in /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ecdsa_key /etc/ssh/ssh_host_rsa_key; do
            [[ -f "$key" ]] && printf 'HostKey %s\n' "$key"
        done
        printf '%s\n' "$@"
    } >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

start_sshd() { # name, port, pidfile, log, extra config lines...
    local name=$1 port=$2 pidfile=$3 logfile=$4
    shift 4
    if sshd_answers "$port"; then
        return # whose it is: ssh_lab_check_listener, once both answer
    fi
    if ssh_lab_alive "$pidfile" sshd; then
        log "$name is running but not answering yet; waiting for it"
        return
    fi
    write_sshd_config "$SSH_LAB_DIR/$name.conf" "$port" "$pidfile" "$@"
    /usr/sbin/sshd -t -f "$SSH_LAB_DIR/$name.conf" || die "$SSH_LAB_DIR/$name.conf: sshd refuses it (see above)"
    log "starting $name on 127.0.0.1:$port (log: $logfile)"
    /usr/sbin/sshd -f "$SSH_LAB_DIR/$name.conf" -E "$logfile" \
        || { show_log "$logfile"; die "$name failed to start; see $logfile"; }
}

start_docker2() {
    if ssh_lab_alive "$DOCKER2_PIDFILE" dockerd; then
        log "the second dockerd is running but not answering yet; waiting for it"
        return
    fi
    # Its own configuration (/etc/docker/daemon.json may name hosts or a data-root), and
    # its own identity: dockerd 20.10 takes its engine ID from a key file that would
    # otherwise be the first's (/etc/docker/key.json), making the two look like one engine.
    # (Later dockerds keep the ID in their data-root and refuse that key.)
    local major
    major=$(dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major < 23)); then
        printf '{"deprecated-key-path": "/var/lib/docker2/key.json"}\n' >"$DOCKER2_CONFIG"
    else
        printf '{}\n' >"$DOCKER2_CONFIG"
    fi
    log "starting a second dockerd on $DOCKER2_SOCK (log: $DOCKERD2_LOG)"
    # Its own containerd namespace too, should it share a system containerd with the first.
    # Its own network namespace: a dockerd started with `--bridge none` deletes the link
    # named docker0 at start-up (moby's removeDefaultBridgeInterface), which in the host's
    # namespace is the first dockerd's default bridge (the host's own, on a lab host with
    # Docker CE). Its instances run with `network: none`, so it needs no host network.
    # shellcheck disable=SC2016  # $1.. are expanded by the inner sh
    sh -c 'setsid nohup unshare --net dockerd --config-file "$2" --host "unix://$3" --data-root /var/lib/docker2 \
        --exec-root /run/docker2 --pidfile "$4" --bridge none --iptables=false --ip-masq=false \
        --containerd-namespace docker2 --containerd-plugins-namespace docker2-plugins \
        >"$1" 2>&1 </dev/null &' sh "$DOCKERD2_LOG" "$DOCKER2_CONFIG" "$DOCKER2_SOCK" "$DOCKER2_PIDFILE"
}

# Host keys of both sshds in known_hosts: paramiko (the docker SDK's and bench's) refuses
# a host whose key it negotiates is not there. Written from the host key files the lab's
# sshds use (write_sshd_config), never from what answers on the port: anyone can listen
# on 127.0.0.1:2222, and a keyscan would trust their key for good. Any other key for the
# two names is removed: the name alone from a line that lists other hosts too, a hashed
# line for it whole (it names one host); wildcard and negated patterns, @-marked lines
# and other hosts' entries stay as they are.
SSH_LAB_HOST_KEYS=${BENCH_SSH_HOST_KEYS:-/etc/ssh}
ssh_lab_known_hosts() {
    local known name f keytype key want='' hashed='' names=(127.0.0.1 "[127.0.0.1]:2222")
    known=${BENCH_SSH_KNOWN_HOSTS:-$(dirname "$SSH_LAB_KEY")/known_hosts}
    touch "$known"
    for name in "${names[@]}"; do
        for f in "$SSH_LAB_HOST_KEYS"/ssh_host_{ed25519,ecdsa,rsa}_key.pub; do
            if [[ -f "$f" ]] && read -r keytype key _ <"$f"; then
                want+="$name $keytype $key"$'\n'
            fi
        done
        # ssh-keygen alone can match a hashed name; it also lists pattern lines, which
        # the awk below tells apart (a hashed host field starts with |1|).
        hashed+=$({ ssh-keygen -F "$name" -f "$known" 2>/dev/null || true; } \
            | sed -n 's/^# Host .* found: line \([0-9]*\).*/\1/p')$'\n'
    done
    NAMES=${names[*]} WANT=$want HASHED=$hashed awk '
        BEGIN {
            n = split(ENVIRON["NAMES"], names, " ")
            for (i = 1; i <= n; i++) ours[names[i]] = 1
            wanted = split(ENVIRON["WANT"], w, "\n")
            for (i = 1; i <= wanted; i++) want[w[i]] = 1
            n = split(ENVIRON["HASHED"], h, "\n")
            for (i = 1; i <= n; i++) if (h[i] != "") hashed[h[i]] = 1
        }
        /^[ \t]*(#|@|$)/ { print; next }
        $1 ~ /^\|1\|/ { if (!(NR in hashed)) print; next }
        {
            entry = $1 " " $2 " " $3
            if (entry in want && !(entry in seen)) { seen[entry] = 1; print; next }
            n = split($1, hosts, ",")
            kept = ""
            for (i = 1; i <= n; i++) if (!(hosts[i] in ours)) kept = kept (kept == "" ? "" : ",") hosts[i]
            if (kept == $1) print
            else if (kept != "") print kept substr($0, index($0, $1) + length($1))
        }
        END { for (i = 1; i <= wanted; i++) if (w[i] != "" && !(w[i] in seen)) { seen[w[i]] = 1; print w[i] } }' "$known" >"$known.bench-tmp"
    if cmp -s "$known" "$known.bench-tmp"; then
        rm -f "$known.bench-tmp"
        return
    fi
    log "writing the lab's host keys (from $SSH_LAB_HOST_KEYS) for ${names[*]} to $known"
    chmod --reference="$known" "$known.bench-tmp"
    mv -f "$known.bench-tmp" "$known"
}

ssh_lab() {
    if ((EUID != 0)); then
        log "not root: skipping the SSH lab (loopback sshd, second dockerd) that remote-host tests use"
        return 0
    fi
    [[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd not found: install openssh-server (scripts/setup-host.sh does)"
    have dockerd || die "dockerd not found: install docker.io (scripts/setup-host.sh does)"
    install -d -m 0755 "$SSH_LAB_DIR"
    install -d -m 0755 /run/sshd # sshd's privilege separation directory
    ssh-keygen -A >/dev/null     # host keys, only those missing
    ssh_lab_key
    local wait_docker2=0
    if ! docker2_ok; then
        start_docker2
        wait_docker2=1
    fi
    start_sshd bench-sshd 22 "$SSHD_PIDFILE" "$SSHD_LOG"
    start_sshd bench-sshd2 2222 "$SSHD2_PIDFILE" "$SSHD2_LOG" "SetEnv DOCKER_HOST=unix://$DOCKER2_SOCK"
    local deadline=$((SECONDS + TIMEOUT)) port
    for port in 22 2222; do
        until sshd_answers "$port"; do
            ((SECONDS < deadline)) || die "no sshd answers on 127.0.0.1:$port within ${TIMEOUT}s; see $SSHD_LOG, $SSHD2_LOG"
            sleep 0.3
        done
    done
    ssh_lab_check_listener 22 "$SSHD_PIDFILE" warn
    ssh_lab_check_listener 2222 "$SSHD2_PIDFILE" die
    ssh_lab_known_hosts
    if ((wait_docker2)); then
        local started=$SECONDS
        until docker2_ok; do
            if ((SECONDS >= deadline)) || { ((SECONDS - started >= 3)) && ! ssh_lab_alive "$DOCKER2_PIDFILE" dockerd; }; then
                log "ERROR: the second dockerd did not answer on $DOCKER2_SOCK; log: $DOCKERD2_LOG"
                show_log "$DOCKERD2_LOG"
                exit 1
            fi
            sleep 0.5
        done
        log "the second dockerd is up ($DOCKER2_SOCK, $((SECONDS - started))s)"
    fi
}

if [[ "${BENCH_SKIP_SSH_LAB:-0}" != 1 ]]; then
    ssh_lab
fi

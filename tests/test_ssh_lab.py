"""The loopback SSH lab leaves no door open (scripts/start-engines.sh's functions, run on
files under tmp_path: the test's own key, authorized_keys, host keys and known_hosts, and
sshds of its own on free loopback ports).

Before: the lab's passphrase-less root key went into authorized_keys without options
(on a host whose sshd listens on 0.0.0.0:22 it logged in as root from anywhere), a line
holding it was moved or dropped whatever its options; known_hosts was filled by a
keyscan of whatever answered on 127.0.0.1:2222, and stale entries went with
`ssh-keygen -R`, which drops a whole line naming other hosts too; a listener on a lab port
was trusted as the lab's if some sshd of the lab was alive.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, require_engine

SCRIPT = REPO / "scripts" / "start-engines.sh"
SSHD = Path("/usr/sbin/sshd")
LAB_FUNCTIONS = (
    "have",
    "ssh_lab_alive",
    "ssh_lab_owns_port",
    "ssh_lab_check_listener",
    "ssh_lab_key",
    "write_sshd_config",
    "ssh_lab_known_hosts",
)


def functions(*names: str) -> str:
    text = SCRIPT.read_text()
    out = []
    for name in names:
        # A one-line function, or its header (maybe with a comment) up to the first "}" line.
        one_line = rf"^{name}\(\) \{{[^\n]*\}}\n"
        m = re.search(rf"{one_line}|^{name}\(\) \{{[^\n]*\n.*?^\}}\n", text, re.M | re.S)
        assert m, f"{name} not found in {SCRIPT}"
        out.append(m.group(0))
    return "\n".join(out)


def run(tmp_path: Path, call: str, **env: str) -> subprocess.CompletedProcess[str]:
    prelude = (
        "log() { printf 'start-engines: %s\\n' \"$*\" >&2; }\n"
        "die() { printf 'start-engines: ERROR: %s\\n' \"$@\" >&2; exit 1; }\n"
    )
    # The script's own assignment, so a BENCH_SSH_HOST_KEYS of the test reaches it.
    host_keys = re.search(r"^SSH_LAB_HOST_KEYS=.*$", SCRIPT.read_text(), re.M)
    assert host_keys
    return subprocess.run(
        [
            "bash",
            "-c",
            f"set -euo pipefail\n{prelude}{functions(*LAB_FUNCTIONS)}\n"
            f"{host_keys.group(0)}\n{call}",
        ],
        env={**os.environ, "SSH_LAB_KEY": str(tmp_path / "ssh" / "lab_key"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def keygen(path: Path, comment: str = "") -> str:
    """A fresh ed25519 key at `path`; its public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return Path(f"{path}.pub").read_text().strip()


def key_of(pub_line: str) -> str:
    return " ".join(pub_line.split()[:2])


# -- authorized_keys ----------------------------------------------------------------------


def test_the_lab_key_is_loopback_only_and_an_old_bare_line_is_replaced_where_it_stands(
    tmp_path,
):
    ssh = tmp_path / "ssh"
    ssh.mkdir(mode=0o700)
    pub = keygen(ssh / "lab_key", "bench-test@x")
    auth = ssh / "authorized_keys"
    other = keygen(tmp_path / "users_key", "user@laptop")
    last = keygen(tmp_path / "ci_key", "ci@runner")
    auth.write_text(f"{other}\n{pub}\n{last}\n{pub}\n")
    p = run(tmp_path, "ssh_lab_key")
    assert p.returncode == 0, p.stderr
    restricted = f'from="127.0.0.1,::1",restrict {pub}'
    lines = auth.read_text().splitlines()
    assert lines == [other, restricted, last]  # the bare line edited in place, its copy gone
    # Idempotent: a second run changes nothing and says nothing.
    before = auth.stat().st_ino
    again = run(tmp_path, "ssh_lab_key")
    assert (again.returncode, again.stderr) == (0, "")
    assert auth.stat().st_ino == before and auth.read_text().splitlines() == lines
    assert (auth.stat().st_mode & 0o777) == 0o600


def test_a_line_holding_the_lab_key_with_options_of_its_own_is_left_and_named(tmp_path):
    ssh = tmp_path / "ssh"
    ssh.mkdir(mode=0o700)
    pub = keygen(ssh / "lab_key", "bench-test@x")
    auth = ssh / "authorized_keys"
    theirs = f'command="/usr/bin/uptime" {pub}'
    auth.write_text(f"{theirs}\n")
    p = run(tmp_path, "ssh_lab_key")
    assert p.returncode == 0, p.stderr
    assert auth.read_text().splitlines() == [theirs, f'from="127.0.0.1,::1",restrict {pub}']
    assert "WARNING" in p.stderr and "options bench did not write" in p.stderr


# -- known_hosts --------------------------------------------------------------------------


def lab_host_key(tmp_path):
    """A host key folder holding one ed25519 key (as /etc/ssh would), that key, and the
    known_hosts path under a 0700 ssh folder (not yet made)."""
    keys = tmp_path / "hostkeys"
    keys.mkdir()
    host_key = key_of(keygen(keys / "ssh_host_ed25519_key"))
    ssh = tmp_path / "ssh"
    ssh.mkdir(mode=0o700)
    return keys, host_key, ssh / "known_hosts"


def test_known_hosts_come_from_the_lab_host_key_files_and_stale_entries_go(tmp_path):
    keys, host_key, known = lab_host_key(tmp_path)
    ssh = known.parent
    # A key a foreign listener on :2222 got trusted with, and another host's entry.
    foreign = "[127.0.0.1]:2222 " + key_of(keygen(tmp_path / "foreign"))
    unrelated = "lab1.example.org " + key_of(keygen(tmp_path / "lab1"))
    known.write_text(f"{foreign}\n{unrelated}\n")
    known.chmod(0o640)
    p = run(tmp_path, "ssh_lab_known_hosts", BENCH_SSH_HOST_KEYS=str(keys))
    assert p.returncode == 0, p.stderr
    lines = known.read_text().splitlines()
    assert lines == [unrelated, f"127.0.0.1 {host_key}", f"[127.0.0.1]:2222 {host_key}"]
    assert (known.stat().st_mode & 0o777) == 0o640
    assert sorted(f.name for f in ssh.iterdir()) == ["known_hosts"]  # no .old, no temporary
    # Idempotent: nothing to do, nothing said.
    again = run(tmp_path, "ssh_lab_known_hosts", BENCH_SSH_HOST_KEYS=str(keys))
    assert (again.returncode, again.stderr) == (0, "")
    assert known.read_text().splitlines() == lines
    # Nothing is asked of whatever listens on the ports.
    assert "ssh-keyscan" not in functions("ssh_lab_known_hosts")


def test_only_the_lab_names_leave_known_hosts_other_hosts_entries_stay(tmp_path):
    keys, host_key, known = lab_host_key(tmp_path)
    stale = key_of(keygen(tmp_path / "stale"))
    theirs = key_of(keygen(tmp_path / "theirs"))
    hashed_other = tmp_path / "hashed_other"
    hashed_other.write_text(f"lab2.example.org {theirs}\n[127.0.0.1]:2222 {stale}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed_other)], check=True, capture_output=True)
    hashed_lab2, hashed_stale = hashed_other.read_text().splitlines()
    kept = [
        f"localhost {stale}",  # was 127.0.0.1,localhost: only the lab's name goes
        f"127.0.0.* {theirs}",  # a pattern is the user's, not an entry for the name
        f"@cert-authority 127.0.0.1 {theirs}",
        hashed_lab2,
    ]
    known.write_text(
        "\n".join([f"127.0.0.1,localhost {stale}", *kept[1:3], hashed_stale, hashed_lab2, "# mine"])
        + "\n"
    )
    p = run(tmp_path, "ssh_lab_known_hosts", BENCH_SSH_HOST_KEYS=str(keys))
    assert p.returncode == 0, p.stderr
    assert known.read_text().splitlines() == [
        *kept,
        "# mine",
        f"127.0.0.1 {host_key}",
        f"[127.0.0.1]:2222 {host_key}",
    ]


# -- the lab's sshds: root only, and the listener is theirs -------------------------------


def _sshd_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("sshd reads the host keys as root")
    # The set-up installs openssh-server: in CI its absence is a failure, not a skip.
    require_engine("sshd", SSHD.exists(), "no /usr/sbin/sshd: scripts/setup-host.sh installs it")
    if not Path("/etc/ssh/ssh_host_ed25519_key").exists():
        pytest.skip("no host key in /etc/ssh (ssh-keygen -A makes them)")


def test_the_lab_sshd_config_allows_root_only_and_sshd_takes_it(tmp_path):
    _sshd_or_skip()
    conf = tmp_path / "sshd.conf"
    p = run(tmp_path, f"write_sshd_config {conf} 2222 {tmp_path}/pid")
    assert p.returncode == 0, p.stderr
    assert "AllowUsers root" in conf.read_text().splitlines()
    effective = subprocess.run(
        [str(SSHD), "-T", "-f", str(conf)], capture_output=True, text=True, timeout=10
    )
    assert effective.returncode == 0, effective.stderr
    assert "allowusers root" in effective.stdout.splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_sshd(tmp_path):
    """An sshd of the lab's configuration on a free loopback port: (port, pid file).

    It reads the keys ssh_lab_key lists in this test's own folder (tmp_path/ssh): sshd
    takes the first value of a keyword, so the two lines put first win over the lab's
    (StrictModes would refuse a key file under the world-writable /tmp).
    """
    _sshd_or_skip()
    port, pidfile, conf = _free_port(), tmp_path / "sshd.pid", tmp_path / "sshd.conf"
    assert run(tmp_path, f"write_sshd_config {conf} {port} {pidfile}").returncode == 0
    ours = f"AuthorizedKeysFile {tmp_path}/ssh/authorized_keys\nStrictModes no\n"
    conf.write_text(ours + conf.read_text())
    subprocess.run(
        [str(SSHD), "-f", str(conf), "-E", str(tmp_path / "sshd.log")], check=True, timeout=10
    )
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, (tmp_path / "sshd.log").read_text()
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    try:
        yield port, pidfile
    finally:
        os.kill(pid, 15)


def test_a_lab_port_answered_by_the_lab_sshd_is_its_own(tmp_path, lab_sshd):
    port, pidfile = lab_sshd
    p = run(tmp_path, f"ssh_lab_check_listener {port} {pidfile} die")
    assert (p.returncode, p.stderr) == (0, "")


def test_a_foreign_listener_on_a_lab_port_is_refused_though_the_lab_sshd_is_alive(
    tmp_path, lab_sshd
):
    _, pidfile = lab_sshd
    with socket.socket() as foreign:  # anyone may listen on an unprivileged port
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        refused = run(tmp_path, f"ssh_lab_check_listener {port} {pidfile} die")
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "not the lab's sshd" in refused.stderr
        warned = run(tmp_path, f"ssh_lab_check_listener {port} {pidfile} warn")
        assert warned.returncode == 0
        assert warned.stderr.count("\n") == 1 and "WARNING" in warned.stderr
        # Its own pid file naming it does not make it the lab's: it is no sshd.
        own = tmp_path / "foreign.pid"
        own.write_text(f"{os.getpid()}\n")
        assert run(tmp_path, f"ssh_lab_check_listener {port} {own} die").returncode == 1


def test_the_lab_key_runs_commands_from_loopback_only_and_gets_no_terminal(tmp_path, lab_sshd):
    port, _ = lab_sshd
    key = tmp_path / "ssh" / "lab_key"
    assert run(tmp_path, "ssh_lab_key").returncode == 0  # makes the key and its line
    client = [
        "ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    ]  # fmt: skip

    def ssh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*client, *args], capture_output=True, text=True, timeout=30)

    # docker's ssh:// and bench's SshHost run commands over exec channels: those work.
    done = ssh("root@127.0.0.1", "echo", "in")
    assert (done.returncode, done.stdout) == (0, "in\n"), done.stderr
    # From another address (127.0.0.2 is loopback too, but not in from=): refused, as a
    # host's own sshd on 0.0.0.0:22 refuses it from the network.
    other = ssh("-b", "127.0.0.2", "root@127.0.0.1", "true")
    assert other.returncode == 255 and "Permission denied" in other.stderr
    # restrict: no terminal, though this sshd would give one (PermitTTY is not set).
    tty = ssh("-tt", "root@127.0.0.1", "tty")
    assert "PTY allocation request failed" in tty.stderr and "/dev/pts" not in tty.stdout

"""The loopback SSH lab leaves no door open (scripts/start-engines.sh's functions, run on
files under tmp_path: the test's own key, authorized_keys, host keys and known_hosts).

Before: the lab's passphrase-less root key went into authorized_keys without options
(on a host whose sshd listens on 0.0.0.0:22 it logged in as root from anywhere), and
known_hosts was filled by a keyscan of whatever answered on 127.0.0.1:2222.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "start-engines.sh"


def functions(*names: str) -> str:
    text = SCRIPT.read_text()
    out = []
    for name in names:
        m = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.S | re.M)
        assert m, f"{name} not found in {SCRIPT}"
        out.append(m.group(0))
    return "\n".join(out)


def run(tmp_path: Path, call: str, **env: str) -> subprocess.CompletedProcess[str]:
    prelude = "log() { printf 'start-engines: %s\\n' \"$*\" >&2; }\n"
    body = functions("ssh_lab_key", "ssh_lab_known_hosts")
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{prelude}{body}\n"
         'SSH_LAB_HOST_KEYS=${BENCH_SSH_HOST_KEYS:-/etc/ssh}\n' + call],
        env={**os.environ, "SSH_LAB_KEY": str(tmp_path / "ssh" / "lab_key"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def keygen(path: Path, comment: str = "") -> str:
    """A fresh ed25519 key at `path`; its public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return Path(f"{path}.pub").read_text().strip()


def test_the_lab_key_is_loopback_only_and_an_old_bare_line_is_replaced(tmp_path):
    ssh = tmp_path / "ssh"
    ssh.mkdir(mode=0o700)
    pub = keygen(ssh / "lab_key", "bench-test@x")
    auth = ssh / "authorized_keys"
    other = keygen(tmp_path / "users_key", "user@laptop")
    auth.write_text(f"{other}\n{pub}\n")
    p = run(tmp_path, "ssh_lab_key")
    assert p.returncode == 0, p.stderr
    lines = auth.read_text().splitlines()
    assert lines == [other, f'from="127.0.0.1,::1",restrict {pub}']
    # Idempotent: a second run changes nothing.
    before = auth.stat().st_ino
    assert run(tmp_path, "ssh_lab_key").returncode == 0
    assert auth.stat().st_ino == before and auth.read_text().splitlines() == lines
    assert (auth.stat().st_mode & 0o777) == 0o600


def test_known_hosts_come_from_the_lab_host_key_files_and_stale_entries_go(tmp_path):
    keys = tmp_path / "hostkeys"
    keys.mkdir()
    host_key = keygen(keys / "ssh_host_ed25519_key").split()[:2]
    ssh = tmp_path / "ssh"
    ssh.mkdir(mode=0o700)
    known = ssh / "known_hosts"
    # A key a foreign listener on :2222 got trusted with, and another host's entry.
    foreign = "[127.0.0.1]:2222 " + " ".join(keygen(tmp_path / "foreign").split()[:2])
    unrelated = "lab1.example.org " + " ".join(keygen(tmp_path / "lab1").split()[:2])
    known.write_text(f"{foreign}\n{unrelated}\n")
    p = run(tmp_path, "ssh_lab_known_hosts", BENCH_SSH_HOST_KEYS=str(keys))
    assert p.returncode == 0, p.stderr
    lines = set(known.read_text().splitlines())
    assert foreign not in lines and unrelated in lines
    assert f"127.0.0.1 {' '.join(host_key)}" in lines
    assert f"[127.0.0.1]:2222 {' '.join(host_key)}" in lines
    assert not (ssh / "known_hosts.old").exists()
    # No keyscan: nothing is asked of whatever listens on the ports.
    assert "ssh-keyscan" not in functions("ssh_lab_known_hosts")


def test_the_lab_sshd_config_allows_root_only():
    m = re.search(r"^write_sshd_config\(\) \{[^\n]*\n.*?^\}\n", SCRIPT.read_text(), re.S | re.M)
    assert m and '"AllowUsers root"' in m.group(0)

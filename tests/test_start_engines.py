"""scripts/start-engines.sh gives /dev/kvm the group udev would before it starts libvirtd.

Without it (hosts without udev: /dev/kvm root:root 0600) libvirt 9.0 re-probes QEMU's
capabilities several times per domain start: createXML took 40-90 s instead of 0.3 s.
The functions are run on a character node of our own, never on /dev/kvm.
"""

from __future__ import annotations

import grp
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_engine

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "start-engines.sh"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mknod and chgrp need root"),
]


def _kvm_gid() -> int:
    try:
        return grp.getgrnam("kvm").gr_gid
    except KeyError:
        pytest.skip("no kvm group on this host")


def _functions() -> str:
    text = SCRIPT.read_text()
    out = []
    for name in ("kvm_node_needs_group", "fix_kvm_node"):
        m = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.S | re.M)
        assert m, f"{name} not found in {SCRIPT}"
        out.append(m.group(0))
    return "\n".join(out)


def _fix(node: Path) -> subprocess.CompletedProcess[str]:
    prelude = "SUDO=()\nlog() { printf 'start-engines: %s\\n' \"$*\" >&2; }\n"
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{prelude}{_functions()}\nfix_kvm_node"],
        env={**os.environ, "KVM_NODE": str(node)},
        capture_output=True,
        text=True,
        timeout=10,
    )


def _node(tmp_path: Path, gid: int, mode: int) -> Path:
    node = tmp_path / "kvm"
    os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers: harmless
    os.chown(node, 0, gid)
    os.chmod(node, mode)
    return node


def test_a_root_only_node_gets_group_kvm_and_0660(tmp_path):
    kvm = _kvm_gid()
    node = _node(tmp_path, 0, 0o600)
    done = _fix(node)
    assert done.returncode == 0, done.stderr
    st = node.stat()
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (kvm, 0o660)
    assert "giving it group kvm" in done.stderr
    again = _fix(node)  # idempotent: nothing to say the second time
    assert (again.returncode, again.stderr) == (0, "")


@pytest.mark.parametrize("mode", [0o660, 0o666])
def test_a_node_the_kvm_group_can_use_is_left_alone(tmp_path, mode):
    kvm = _kvm_gid()
    node = _node(tmp_path, kvm, mode)
    before = node.stat()
    done = _fix(node)
    assert (done.returncode, done.stderr) == (0, "")
    after = node.stat()
    # Not even touched: a changed ctime alone makes a running libvirtd re-check KVM.
    assert (after.st_gid, after.st_mode, after.st_ctime_ns) == (
        kvm,
        before.st_mode,
        before.st_ctime_ns,
    )


def test_group_kvm_without_group_write_is_fixed(tmp_path):
    kvm = _kvm_gid()
    node = _node(tmp_path, kvm, 0o640)
    assert _fix(node).returncode == 0
    assert stat.S_IMODE(node.stat().st_mode) == 0o660


def test_no_kvm_device_no_change(tmp_path):
    _kvm_gid()
    done = _fix(tmp_path / "absent")
    assert (done.returncode, done.stderr) == (0, "")
    plain = tmp_path / "plain"
    plain.write_text("")
    plain.chmod(0o600)
    assert (_fix(plain).returncode, stat.S_IMODE(plain.stat().st_mode)) == (0, 0o600)


# -- the SSH lab: a test key and loopback-only sshds -------------------------------------


def _lab(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    text = SCRIPT.read_text()
    funcs = []
    for name in ("have", "ssh_lab_key", "write_sshd_config"):
        m = re.search(rf"^{name}\(\) \{{.*?^\}}\n|^{name}\(\) \{{.*?\}}\n", text, re.S | re.M)
        assert m, f"{name} not found in {SCRIPT}"
        funcs.append(m.group(0))
    prelude = "log() { printf 'start-engines: %s\\n' \"$*\" >&2; }\n"
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + prelude + "\n".join(funcs) + script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_test_key_is_made_once_and_the_users_files_are_only_appended_to(tmp_path):
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "authorized_keys").write_text("ssh-ed25519 AAAAmine me@laptop\n")
    (ssh / "config").write_text("Host lab2\n    User me\n")
    key = ssh / "bench_test_ed25519"
    done = _lab(f"\nSSH_LAB_KEY={key}\nssh_lab_key")
    assert done.returncode == 0, done.stderr
    pub = key.with_suffix(".pub").read_text().split()[:2]
    auth = (ssh / "authorized_keys").read_text()
    assert auth.startswith("ssh-ed25519 AAAAmine me@laptop\n") and " ".join(pub) in auth
    config = (ssh / "config").read_text()
    assert config.startswith("Host lab2\n    User me\n")
    assert f"Host 127.0.0.1\n    IdentityFile {key}\n" in config
    private = key.read_bytes()
    again = _lab(f"\nSSH_LAB_KEY={key}\nssh_lab_key")
    assert (again.returncode, again.stderr) == (0, "")  # nothing to do the second time
    assert key.read_bytes() == private
    assert (ssh / "authorized_keys").read_text() == auth
    assert (ssh / "config").read_text() == config


def test_the_lab_sshd_listens_on_loopback_only_and_takes_keys_only(tmp_path):
    sshd = Path("/usr/sbin/sshd")
    # The set-up installs openssh-server: in CI its absence is a failure, not a skip.
    require_engine("sshd", sshd.exists(), "no /usr/sbin/sshd: scripts/setup-host.sh installs it")
    conf = tmp_path / "sshd.conf"
    done = _lab(f"\nwrite_sshd_config {conf} 2222 {tmp_path}/pid 'SetEnv DOCKER_HOST=unix:///x'")
    assert done.returncode == 0, done.stderr
    text = conf.read_text()
    listen = [line for line in text.splitlines() if line.startswith("ListenAddress")]
    assert listen == ["ListenAddress 127.0.0.1"]
    for line in ("Port 2222", "PermitRootLogin prohibit-password", "PasswordAuthentication no"):
        assert line in text.splitlines()
    assert text.splitlines()[-1] == "SetEnv DOCKER_HOST=unix:///x"
    if Path("/etc/ssh/ssh_host_ed25519_key").exists():  # sshd -t needs a host key
        checked = subprocess.run(
            [str(sshd), "-t", "-f", str(conf)], capture_output=True, text=True, timeout=10
        )
        assert checked.returncode == 0, checked.stderr

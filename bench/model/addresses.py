"""Every machine and engine address bench accepts, checked in one place.

bench runs as root, and its addresses come from scenario files, results and command
lines written by someone else. An address reaches programs that read more into it than
a place: libvirt runs the `command=` of a `qemu+ext://` URI, and an SSH host name is
pasted into the user's `ProxyCommand` (%h) and run by a shell (paramiko lacks
OpenSSH's metacharacter check, CVE-2023-51385). So an address is refused unless it is
exactly one of these shapes, with every part checked:

- an SSH machine: ssh://[user@]host[:port], host an RFC 1123 name or an IP literal
  ([v6] in brackets), user a plain user name, port 1-65535, nothing more;
- a local engine socket: unix:///absolute/path, no query, no fragment;
- a libvirt hypervisor: qemu:///system, qemu:///session, or qemu+ssh://<ssh>/system.

Each check returns the parsed address (SshAddress, SocketPath, LibvirtUri) or raises
ValueError with the reason: pydantic validators and the CLI turn it into one line naming
the key or option, exit 2. A leaf module: it imports nothing from bench.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: The `hosts:` address (and `--host` value) of the machine bench runs on.
LOCAL = "local"
SSH_FORM = "ssh://[user@]host[:port]"
LIBVIRT_FORMS = "qemu:///system, qemu:///session or qemu+ssh://[user@]host[:port]/system"

# RFC 1123: labels of letters, digits and inner hyphens, 63 at most, 253 in all.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A plain user name (useradd's rule, no leading hyphen): never an ssh option.
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")
_NETLOC = re.compile(r"(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
# A path of ordinary file-name characters: what a socket path needs, nothing to expand.
_SOCKET_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*")


@dataclass(frozen=True)
class SshAddress:
    """A checked ssh://[user@]host[:port]."""

    host: str  # a name or an IP address, without brackets
    user: str | None = None
    port: int | None = None

    @property
    def hostport(self) -> str:
        """host[:port], an IPv6 host in brackets: the machine, whoever logs in."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def netloc(self) -> str:
        return f"{self.user}@{self.hostport}" if self.user else self.hostport

    def __str__(self) -> str:
        return f"ssh://{self.netloc}"


@dataclass(frozen=True)
class SocketPath:
    """A checked unix:///absolute/path of an engine's local socket."""

    path: str

    def __str__(self) -> str:
        return f"unix://{self.path}"


@dataclass(frozen=True)
class LibvirtUri:
    """A checked libvirt URI of the QEMU driver: here (ssh None) or over SSH."""

    path: str  # /system or /session (/system only over SSH)
    ssh: SshAddress | None = None

    def __str__(self) -> str:
        return f"qemu+ssh://{self.ssh.netloc}{self.path}" if self.ssh else f"qemu://{self.path}"


def _split(address: str, scheme: str) -> tuple[str, str]:
    """(netloc, path) of scheme://netloc/path, refusing queries, fragments and any
    character that is not printable ASCII (a newline, a space, an escape)."""
    if not isinstance(address, str) or not address.isascii() or not address.isprintable():
        raise ValueError(f"{address!r} has characters no address has")
    if " " in address or "\\" in address:
        raise ValueError(f"{address!r} has characters no address has")
    prefix = f"{scheme}://"
    if not address.startswith(prefix):
        raise ValueError(f"{address!r} is not a {prefix} address")
    if "?" in address or "#" in address:
        raise ValueError(f"{address!r}: no query (?...) or fragment (#...) is allowed")
    if "%" in address:
        raise ValueError(f"{address!r}: no %-escapes are allowed")
    rest = address[len(prefix) :]
    netloc, slash, path = rest.partition("/")
    return netloc, slash + path


def check_ssh_netloc(netloc: str, what: str) -> SshAddress:
    """[user@]host[:port], each part checked."""
    m = _NETLOC.fullmatch(netloc)
    if not m or not m.group("host"):
        raise ValueError(f"{what}: give {SSH_FORM}")
    user, host, port = m.group("user"), m.group("host"), m.group("port")
    if user is not None and not _USER.fullmatch(user):
        raise ValueError(f"{what}: {user!r} is not a plain user name")
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"{what}: {host!r} is not an IPv6 address") from None
    elif not (_is_ipv4(host) or (len(host) <= 253 and _HOSTNAME.fullmatch(host))):
        raise ValueError(f"{what}: {host!r} is not a host name (RFC 1123) or an IP address")
    number = None
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{what}: port {port!r} is not a number from 1 to 65535")
        number = int(port)
    return SshAddress(host, user, number)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def check_ssh(address: str) -> SshAddress:
    """ssh://[user@]host[:port] and nothing more (a trailing / is allowed)."""
    netloc, path = _split(address, "ssh")
    if path not in ("", "/"):
        raise ValueError(f"{address!r}: no path is allowed: give {SSH_FORM}")
    return check_ssh_netloc(netloc, address)


def is_ssh(address: str) -> bool:
    try:
        check_ssh(address)
    except ValueError:
        return False
    return True


def check_host(address: str) -> SshAddress | None:
    """A machine: `local` (None) or an SSH address."""
    if address == LOCAL:
        return None
    if not address.startswith("ssh://"):
        raise ValueError(f"{address!r} is not a host address: write `local` or {SSH_FORM}")
    return check_ssh(address)


def check_socket(address: str) -> SocketPath:
    """unix:///absolute/path/to.sock."""
    netloc, path = _split(address, "unix")
    if netloc or not _SOCKET_PATH.fullmatch(path) or "/../" in f"{path}/":
        raise ValueError(f"{address!r}: give unix:///absolute/path/to/the.sock")
    return SocketPath(path)


def check_docker(address: str) -> SshAddress | SocketPath:
    """A Docker Engine: its local socket or a machine over SSH."""
    if address.startswith("ssh://"):
        return check_ssh(address)
    if address.startswith("unix://"):
        return check_socket(address)
    raise ValueError(
        f"{address!r}: give unix:///path/to/docker.sock or {SSH_FORM} (bench reads a "
        "remote engine's machine over SSH, so never tcp://)"
    )


def check_libvirt(uri: str) -> LibvirtUri:
    """A libvirt hypervisor bench can read the machine of: the local QEMU driver, or the
    QEMU driver of a machine over SSH, with no parameters (a URI's query can name a
    program for libvirt to run, a socket, a key file or no host-key check)."""
    for scheme in ("qemu+ssh", "qemu"):
        if uri.startswith(f"{scheme}://"):
            netloc, path = _split(uri, scheme)
            break
    else:
        raise ValueError(f"{uri!r}: give {LIBVIRT_FORMS}")
    if scheme == "qemu":
        if netloc or path not in ("/system", "/session"):
            raise ValueError(f"{uri!r}: give {LIBVIRT_FORMS}")
        return LibvirtUri(path)
    if path != "/system":
        raise ValueError(f"{uri!r}: a remote hypervisor is qemu+ssh://[user@]host[:port]/system")
    return LibvirtUri(path, check_ssh_netloc(netloc, uri))


# --- a VM's user-mode network: the guest's address and its forwarded ports -----------
# QEMU's user networking (slirp) puts the guest on 10.0.2.0/24 with this host reachable
# as 10.0.2.2 (its defaults, which libvirt's passt backend is given too); the guest takes
# 10.0.2.15, slirp's first DHCP address, set statically by the bench image's init. A
# forwarded port listens on this host's loopback only: nothing outside reaches a guest.
FORWARD_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class GuestNet:
    """A guest's static IPv4 set-up on a user-mode network."""

    address: str
    prefix: int
    gateway: str  # this host, as the guest reaches it

    def __post_init__(self) -> None:
        net = ipaddress.IPv4Interface(f"{self.address}/{self.prefix}").network
        if ipaddress.IPv4Address(self.gateway) not in net:
            raise ValueError(f"gateway {self.gateway} is not on {net}")

    @property
    def kernel_word(self) -> str:
        """The kernel command-line word the bench image's init configures eth0 from."""
        return f"bench_net={self.address}/{self.prefix},{self.gateway}"


USER_NET = GuestNet("10.0.2.15", 24, "10.0.2.2")


def check_port(port: object, what: str = "port") -> int:
    """A TCP port number, 1-65535 (a bool or a text is not one)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{what} {port!r} is not a number from 1 to 65535")
    return port


@dataclass(frozen=True)
class Forward:
    """A guest TCP port reached from this host's loopback at `host_port`."""

    host_port: int
    guest_port: int

    def __post_init__(self) -> None:
        check_port(self.host_port, "host port")
        check_port(self.guest_port, "guest port")

    @property
    def hostfwd(self) -> str:
        """QEMU's -netdev user `hostfwd=` value: tcp:127.0.0.1:HOST-:GUEST."""
        return f"tcp:{FORWARD_ADDRESS}:{self.host_port}-:{self.guest_port}"

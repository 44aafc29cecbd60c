"""What the docker and podman backends share (bench.backends.oci), without an engine."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from bench.backends.base import LABEL_OWNER, LABEL_OWNER_HOST, LABEL_PLATFORM, LABEL_RUN
from bench.backends.docker_backend import DockerBackend, DockerSettings
from bench.backends.oci import (
    ContainerBackend,
    Demux,
    cgroup_memory,
    close_attach,
    container_leftover,
    container_processes,
    instance_labels,
    probe_name,
    probe_verdict,
    run_label,
)
from bench.backends.podman_backend import PodmanBackend, PodmanSettings
from bench.backends.probe_cache import ProbeResult
from bench.machines.host import ProcessTable
from tests.helpers import FakeHost


def frame(payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def test_demux_splits_frames_across_reads():
    d = Demux()
    data = frame(b"hello ") + frame(b"BENCH_READY\n", 2)
    assert d.feed(data[:5]) == []  # half a header
    assert d.feed(data[5:12]) == []  # header, half a payload
    assert d.feed(data[12:]) == [b"hello ", b"BENCH_READY\n"]
    assert d.feed(frame(b"")) == [b""]


def test_labels_and_run_filter():
    labels = instance_labels("r1", "c")
    assert labels[LABEL_RUN] == "r1" and labels[LABEL_PLATFORM] == "c"
    assert labels[LABEL_OWNER] == str(os.getpid()) and labels[LABEL_OWNER_HOST]
    assert run_label("r1") == f"{LABEL_RUN}=r1"
    assert run_label(None) == LABEL_RUN


def test_leftover_from_a_list_row_of_either_engine():
    row = {
        "Id": "abcdef0123456789",
        "Names": ["/bench-r1-c-s0-0"],
        "Labels": {LABEL_RUN: "r1", LABEL_OWNER: "42", LABEL_OWNER_HOST: "h"},
    }
    got = container_leftover("docker", row)
    assert (got.backend, got.kind, got.name, got.run_id) == (
        "docker",
        "container",
        "bench-r1-c-s0-0",
        "r1",
    )
    assert (got.owner_pid, got.owner_host) == (42, "h")
    bare = container_leftover("podman", {"Id": "abcdef0123456789", "Labels": None})
    assert (bare.name, bare.run_id, bare.owner_pid) == ("abcdef012345", None, None)


def test_process_view_is_the_container_plus_its_keeper():
    procs = ProcessTable({10: 1, 11: 10, 12: 11, 20: 1})
    assert sorted(container_processes(procs, 11, 10, "container")[0]) == [10, 11, 12]
    assert sorted(container_processes(procs, 11, 1, "container")[0]) == [11, 12]  # init: no keeper
    assert container_processes(procs, 0, None, "container")[0] == []  # not running


def test_probe_name_and_verdict():
    assert probe_name("io.x/y") == f"bench-runtime-probe-io.x-y-{os.getpid()}"
    assert probe_name("runc", "podman") == f"bench-runtime-probe-podman-runc-{os.getpid()}"
    started = "starts the bench image (kernel 6.1.0)"
    assert probe_verdict(0, "6.1.0\n") == ProbeResult(True, started)
    no_output = "the bench image exited with status 1 (no output)"
    assert probe_verdict(1, "") == ProbeResult(False, no_output)
    assert probe_verdict(2, "a\nb") == ProbeResult(
        False, "the bench image exited with status 2 (b)"
    )


def test_close_attach_closes_a_plain_socket_and_a_wrapper():
    a, b = socket.socketpair()
    close_attach(a, a)
    assert a.fileno() == -1

    class Wrapper:
        closed = False

        def close(self):
            self.closed = True

    w = Wrapper()
    close_attach(w, b)
    assert b.fileno() == -1 and w.closed


@pytest.mark.parametrize(
    ("cls", "settings", "flag"),
    [
        (DockerBackend, DockerSettings, "--docker-host"),
        (PodmanBackend, PodmanSettings, "--podman-url"),
    ],
)
def test_both_backends_share_the_cli_hooks(cls, settings, flag):
    assert issubclass(cls, ContainerBackend)
    assert cls.cli_options[0].flag == flag  # the address option comes first
    made = cls._for_options({cls.cli_options[0].key: "unix:///tmp/e.sock"}, "clean")
    assert isinstance(made.settings, settings) and made.address == "unix:///tmp/e.sock"
    (check,) = cls.doctor_checks({cls.cli_options[0].key: "unix:///nonexistent/e.sock"}, print)
    assert not check.ok and check.engine and check.name == cls.engine
    assert "no socket at /nonexistent/e.sock" in check.detail
    assert check.fix == cls.start_hint
    assert cls.build_images("busybox", {cls.cli_options[1].key: True}, print) == []


class _Lister(PodmanBackend):
    """podman's shared parts against a canned container list."""

    rows: list = []

    def _list(self, label, size=False):
        return [r for r in self.rows if label.partition("=")[2] in ("", r["Labels"][LABEL_RUN])]


def test_prefetch_and_leftovers_read_one_list_per_run():
    rows = [
        {
            "Id": "a" * 64,
            "Names": ["bench-r1-0"],
            "Labels": {LABEL_RUN: "r1"},
            "Size": {"rwSize": 7},
        },
        {"Id": "b" * 64, "Names": ["bench-r2-0"], "Labels": {LABEL_RUN: "r2"}, "Size": None},
    ]
    b = _Lister(PodmanSettings(name="p", backend="podman", image="busybox"))
    b.rows = rows
    host = FakeHost(lambda: [])

    class Inst:
        def __init__(self, run_id):
            self.run_id = run_id

    b.prefetch([Inst("r1"), Inst("r2")], host)
    assert b._sizes == {"a" * 64: 7, "b" * 64: None}
    assert [x.name for x in b.leftovers("r2")] == ["bench-r2-0"]
    assert [x.name for x in b.leftovers()] == ["bench-r1-0", "bench-r2-0"]


def test_an_exhausted_ssh_session_limit_is_named():
    # paramiko's only words when sshd's MaxSessions is reached are "Connect failed".
    from bench.backends.docker_backend import DockerBackend, DockerSettings
    from bench.model.errors import EngineUnavailable

    class ChannelException(Exception):  # paramiko.ssh_exception.ChannelException's name
        pass

    backend = DockerBackend(
        DockerSettings(name="c", backend="docker", image="busybox", host="ssh://root@lab2")
    )
    limit = pytest.raises(EngineUnavailable, match="raise sshd's MaxSessions")
    with limit, backend._ssh_sessions():
        raise ChannelException(2, "Connect failed")
    with pytest.raises(KeyError), backend._ssh_sessions():  # anything else: unchanged
        raise KeyError("x")


def test_cgroup_memory_is_read_through_the_engines_host():
    """The cgroup is found from the init's /proc/<pid>/cgroup, and both reads go through
    the Host (a remote SshHost answers them the same way)."""
    cid = "c0" * 32
    d = f"/sys/fs/cgroup/memory/docker/{cid}"
    files = {
        "/proc/42/cgroup": f"4:memory:/docker/{cid}\n0::/docker/{cid}",
        f"{d}/memory.usage_in_bytes": "17567744",
        f"{d}/memory.stat": "cache 16777216\ninactive_file 16777216\ntotal_inactive_file 16777216",
    }
    asked: list[list[str]] = []

    class Host(FakeHost):
        def read_files(self, paths):
            asked.append(list(paths))
            return {p: files.get(p) for p in paths}

    host = Host(lambda: [])
    figure, source = cgroup_memory(host, 42, cid)
    assert figure == 17567744 - 16777216
    assert "memory.usage_in_bytes - total_inactive_file" in source
    assert asked == [["/proc/42/cgroup"], [f"{d}/memory.usage_in_bytes", f"{d}/memory.stat"]]
    # Gone (or unreadable) between the two reads: no figure, the caller asks the engine.
    del files[f"{d}/memory.stat"]
    assert cgroup_memory(host, 42, cid) is None
    assert cgroup_memory(host, 43, cid) is None


def test_an_instance_volume_is_named_after_it_and_found_and_removed_as_a_leftover():
    from bench.backends.oci import VOLUME_SUFFIX, volume_leftover, volume_name

    assert volume_name("bench-r1-c-s0-0") == f"bench-r1-c-s0-0{VOLUME_SUFFIX}"
    row = {"Name": "bench-r1-c-s0-0-vol", "Labels": {LABEL_RUN: "r1", LABEL_OWNER: "42"}}
    got = volume_leftover("docker", row)
    assert (got.kind, got.name, got.run_id, got.owner_pid) == (
        "volume",
        "bench-r1-c-s0-0-vol",
        "r1",
        42,
    )

    class Volumes(_Lister):
        removed: list[tuple[str, str]] = []

        def _list_volumes(self, label):
            return [row] if label.partition("=")[2] in ("", "r1") else []

        def _remove(self, name):
            self.removed.append(("container", name))

        def _remove_volume(self, name):
            self.removed.append(("volume", name))

    b = Volumes(PodmanSettings(name="p", backend="podman", image="busybox", volume=True))
    b.rows = [{"Id": "a" * 64, "Names": ["bench-r1-c-s0-0"], "Labels": {LABEL_RUN: "r1"}}]
    found = b.leftovers("r1")
    assert [(x.kind, x.name) for x in found] == [
        ("container", "bench-r1-c-s0-0"),
        ("volume", "bench-r1-c-s0-0-vol"),
    ]
    assert b.leftovers("r2") == []
    for x in found:
        b.remove_leftover(x)
    assert b.removed == [("container", "bench-r1-c-s0-0"), ("volume", "bench-r1-c-s0-0-vol")]

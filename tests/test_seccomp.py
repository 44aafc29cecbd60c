"""Which host system calls a seccomp filter allows (bench.machines.seccomp): the BPF
evaluation on hand-made programs, and the real filters of this machine's processes
(a container's under Docker's default profile: tests/integration/test_boundary.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.machines import seccomp as sc

ALLOW, KILL, ERRNO = 0x7FFF0000, 0x80000000, 0x00050001
X86_64 = sc.AUDIT_ARCH_X86_64

# read, write and exit_group allowed on x86-64; everything else killed.
THREE = [
    (0x20, 0, 0, 4),  # ld arch
    (0x15, 0, 5, X86_64),  # not x86-64: kill
    (0x20, 0, 0, 0),  # ld nr
    (0x15, 2, 0, 0),  # read
    (0x15, 1, 0, 1),  # write
    (0x15, 0, 1, 231),  # exit_group
    (0x06, 0, 0, ALLOW),
    (0x06, 0, 0, KILL),
]
# openat (257) only when its first argument (the low word at offset 16) is 5, with the
# argument stored and reloaded through scratch memory; the rest answered with an errno.
BY_ARGUMENT = [
    (0x20, 0, 0, 0),  # ld nr
    (0x15, 0, 4, 257),  # not openat: errno
    (0x20, 0, 0, 16),  # ld args[0] (unknown)
    (0x02, 0, 0, 3),  # st M[3]
    (0x60, 0, 0, 3),  # ld M[3]
    (0x15, 1, 0, 5),  # == 5: allow
    (0x06, 0, 0, ERRNO),
    (0x06, 0, 0, ALLOW),
]


def test_a_listed_call_is_allowed_and_the_rest_are_not():
    assert sc.allowed_syscalls([THREE]) == [0, 1, 231]
    assert not sc.may_allow(THREE, 0, arch=0x40000003)  # i386: killed


def test_a_call_allowed_for_some_arguments_may_be_made():
    assert sc.may_allow(BY_ARGUMENT, 257)
    assert not sc.may_allow(BY_ARGUMENT, 2)


def test_every_filter_must_allow_a_call():
    assert sc.allowed_syscalls([THREE, BY_ARGUMENT]) == []
    assert sc.allowed_syscalls([THREE, THREE]) == [0, 1, 231]


def test_a_program_bench_cannot_evaluate_is_refused_not_guessed():
    with pytest.raises(sc.FilterError, match="loads seccomp_data at 70"):
        sc.may_allow([(0x20, 0, 0, 70), (0x06, 0, 0, ALLOW)], 0)
    with pytest.raises(sc.FilterError, match="runs past its end"):
        sc.may_allow([(0x20, 0, 0, 0)], 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="ptrace of another process needs root here")
def test_the_filters_of_a_real_process_are_read_and_it_goes_on():
    """A child that installs no filter has none; the process is left running, untraced."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert sc.read_filters(child.pid) == []
        with open(f"/proc/{child.pid}/status") as f:
            status = f.read()
        assert "TracerPid:\t0" in status and child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_an_evaluated_program_is_counted_once_per_machine(monkeypatch, tmp_path):
    from bench.measurements import boundary

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    boundary._count_allowed.cache_clear()
    programs = (tuple(THREE),)
    assert boundary._count_allowed(programs) == 3
    assert (tmp_path / boundary.SECCOMP_CACHE).is_file()
    boundary._count_allowed.cache_clear()  # another bench process on this machine

    def not_again(_programs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(sc, "allowed_syscalls", not_again)
    assert boundary._count_allowed(programs) == 3
    boundary._count_allowed.cache_clear()

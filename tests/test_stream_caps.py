"""Streams from engines and remote hosts are read in bounded memory."""

from __future__ import annotations

import struct

import pytest

from bench.backends.oci import Demux
from bench.machines.ssh_host import MAX_READ_BYTES, SshError, _read_all


def frame(payload: bytes, stream: int = 1) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload


def test_demux_splits_frames_across_reads():
    d = Demux()
    data = frame(b"hello ") + frame(b"BENCH_READY\n")
    assert d.feed(data[:5]) == []
    assert d.feed(data[5:]) == [b"hello ", b"BENCH_READY\n"]
    assert d.error is None


def test_a_frame_header_announcing_4_gib_stops_the_stream_instead_of_buffering():
    d = Demux()
    head = struct.pack(">BxxxI", 1, 2**32 - 1)
    assert d.feed(frame(b"ok") + head + b"x" * 1000) == [b"ok"]
    assert d.error is not None and "4294967295 bytes" in d.error
    # Nothing more is kept, however much follows.
    for _ in range(100):
        assert d.feed(b"y" * 65536) == []
    assert d._buf == b""


def test_ssh_reads_stop_past_their_cap():
    sent = 0

    def endless(n: int) -> bytes:
        nonlocal sent
        sent += n
        return b"z" * n

    with pytest.raises(SshError, match="passed 64 MiB"):
        _read_all(endless)
    assert sent <= MAX_READ_BYTES + 65536


def test_ssh_reads_under_the_cap_are_whole():
    chunks = [b"a" * 65536, b"b" * 10, b""]
    assert _read_all(lambda n: chunks.pop(0)) == b"a" * 65536 + b"b" * 10

from bench.machines.console import Console, find_marker


def test_marker_fields():
    assert find_marker("BENCH_READY uptime=2.51 kernel=6.1.0-56-amd64", "BENCH_READY") == {
        "uptime": "2.51",
        "kernel": "6.1.0-56-amd64",
    }


def test_marker_mid_line_after_kernel_noise():
    line = "[    2.1] random: crng init done BENCH_READY uptime=2.9 kernel=6.1"
    assert find_marker(line, "BENCH_READY") == {"uptime": "2.9", "kernel": "6.1"}


def test_marker_must_be_a_word():
    assert find_marker("NOT_BENCH_READY uptime=1", "BENCH_READY") is None
    assert find_marker("BENCH_READYX uptime=1", "BENCH_READY") is None
    assert find_marker("nothing here", "BENCH_READY") is None


def test_marker_without_fields():
    assert find_marker("BENCH_READY", "BENCH_READY") == {}


def test_console_split_across_chunks_and_crlf():
    t = iter([1.0, 2.0, 3.0])
    woke = []
    c = Console("BENCH_READY", on_change=lambda: woke.append(1), clock=lambda: next(t))
    c.feed(b"boot log\r\nBENCH_RE")
    assert c.ready_at is None and not c.done
    c.feed(b"ADY uptime=1.25 kernel=k\r\n")
    assert c.ready_at == 2.0
    assert c.fields == {"uptime": "1.25", "kernel": "k"}
    assert woke == [1]


def test_console_close_reason_and_tail():
    c = Console("BENCH_READY")
    c.feed(b"line one\nline two\n")
    c.close("container exited")
    c.close("second close is ignored")
    assert c.done and c.ready_at is None
    assert c.closed_reason == "container exited"
    assert c.tail() == "line one\nline two"


def test_console_tail_is_bounded():
    c = Console("BENCH_READY")
    for i in range(2000):
        c.feed(f"noise line {i}\n".encode())
    assert c.tail(max_lines=3).splitlines() == [
        "noise line 1997",
        "noise line 1998",
        "noise line 1999",
    ]
    assert sum(len(x) for x in c._tail) < 8192


def test_control_characters_from_an_instance_are_shown_as_escapes():
    # A console is the instance's to write: an escape sequence (retitle the terminal,
    # erase the line) must reach error lines and tables as text, not as a command.
    from bench.machines.console import Console

    c = Console("BENCH_READY")
    c.feed(b"\x1b]0;pwned\x07 \x1b[2K\x1b[31mred\x1b[0m\tok\n")
    c.feed(b"BENCH_READY kernel=6.1\x1b[8m uptime=1.0\n")
    tail = c.tail()
    assert "\x1b" not in tail and "\x07" not in tail
    assert "\\x1b]0;pwned\\x07" in tail and "\tok" in tail
    assert c.fields["kernel"] == "6.1\\x1b[8m"

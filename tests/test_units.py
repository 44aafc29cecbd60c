import pytest

from bench.units import format_bytes, format_seconds, parse_duration, parse_size


@pytest.mark.parametrize(
    "text,expected",
    [
        ("128MiB", 128 * 2**20),
        ("2GiB", 2 * 2**30),
        ("512KiB", 512 * 1024),
        ("1GB", 10**9),
        ("1.5MB", 1_500_000),
        ("64 MiB", 64 * 2**20),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12XB", "MiB", "-1MiB", "1e9", True, 1.5, "", -5])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(
    "text,expected", [("120s", 120.0), ("500ms", 0.5), ("2m", 120.0), ("1.5s", 1.5)]
)
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["10", 10, "10 parsecs", "s", True])
def test_durations_need_a_unit(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_formatting():
    assert format_bytes(128 * 2**20) == "128.0 MiB"
    assert format_bytes(None) == "-"
    assert format_seconds(0.1234) == "123 ms"
    assert format_seconds(4.321) == "4.32 s"

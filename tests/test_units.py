import pytest

from bench.model.units import format_bytes, format_seconds, parse_duration, parse_size, size_unit


@pytest.mark.parametrize(
    "text,expected",
    [
        ("128MiB", 128 * 2**20),
        ("2GiB", 2 * 2**30),
        ("512KiB", 512 * 1024),
        ("1GB", 10**9),
        ("1.5MB", 1_500_000),
        ("64 MiB", 64 * 2**20),
        ("100B", 100),
        ("0", 0),
        (0, 0),
    ],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12XB", "MiB", "-1MiB", "1e9", True, 1.5, "", -5])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize("bare", [512, "512", 4096])
def test_a_size_without_a_unit_is_an_error_that_suggests_one(bare):
    # `memory: 512` used to be 512 bytes: nobody means that.
    with pytest.raises(ValueError, match=r"has no unit: write e\.g\. 512MiB|4096MiB"):
        parse_size(bare)


@pytest.mark.parametrize(
    "bare,hint",
    [
        (134217728, "write 134217728B for bytes (= 128MiB)"),
        ("134217728", "write 134217728B for bytes (= 128MiB)"),
        (3 * 2**20 + 1, "write 3145729B for bytes"),
    ],
)
def test_a_bare_byte_count_is_suggested_in_bytes_not_mebibytes(bare, hint):
    # 134217728 is a byte count: the old hint, "134217728MiB", asked for 128 TiB.
    with pytest.raises(ValueError) as e:
        parse_size(bare)
    assert str(e.value).endswith(hint)
    assert "134217728MiB" not in str(e.value)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("120s", 120.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("2min", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h 5min", 3900.0),
        ("1s500ms", 1.5),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["10", 10, "10 parsecs", "s", True, "1m30", "", "1m-30s"])
def test_durations_need_a_unit(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    "n,text",
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1023.6, "1.0 KiB"),  # rounds to 1024 B: said in the next unit up
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1023.9 * 2**10, "1023.9 KiB"),
        (1023.96 * 2**10, "1.0 MiB"),  # not "1024.0 KiB"
        (128 * 2**20, "128.0 MiB"),
        (1985736, "1.9 MiB"),  # binary units: 1.99 MB would be "2.0 MB"
        (24 * 2**30, "24.0 GiB"),
        (3 * 2**40, "3.0 TiB"),
        (-5 * 2**20, "-5.0 MiB"),  # a host drop can be negative
        (-512, "-512 B"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_format_bytes_decimals():
    assert format_bytes(150.25 * 2**20, decimals=2) == "150.25 MiB"
    assert format_bytes(1023.996 * 2**20, decimals=2) == "1.00 GiB"


@pytest.mark.parametrize(
    "s,text",
    [
        (0, "0 s"),
        (4.2e-4, "420 µs"),
        (0.0009994, "999 µs"),
        (0.0009996, "1.00 ms"),  # rounds to 1000 µs: said in the next unit up
        (0.001, "1.00 ms"),
        (0.0123, "12.3 ms"),
        (0.1234, "123 ms"),
        (0.9996, "1.00 s"),
        (1, "1.00 s"),
        (4.321, "4.32 s"),
        (12.345, "12.3 s"),
        (3600, "3600 s"),  # seconds at most: no exponent, no minutes
        (-0.15, "-150 ms"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_format_seconds(s, text):
    assert format_seconds(s) == text


def test_format_seconds_digits_and_trim():
    assert format_seconds(1.2346, digits=4) == "1.235 s"
    assert format_seconds(0.15024, digits=4) == "150.2 ms"
    assert format_seconds(0.0999996, digits=4) == "100.0 ms"
    # axis ticks: no trailing zeros
    assert format_seconds(1.0, digits=4, trim=True) == "1 s"
    assert format_seconds(0.2, digits=4, trim=True) == "200 ms"
    assert format_seconds(2.5, digits=4, trim=True) == "2.5 s"
    assert format_seconds(5e-5, digits=4, trim=True) == "50 µs"


@pytest.mark.parametrize(
    "values,unit",
    [
        ([], ("B", 1)),
        ([0, 512, None, float("nan")], ("B", 1)),
        ([100, 2048], ("KiB", 2**10)),
        ([3 * 2**20, 5 * 2**10], ("MiB", 2**20)),  # the largest value picks the unit
        ([2**20, -2 * 2**30], ("GiB", 2**30)),  # by magnitude
    ],
)
def test_size_unit(values, unit):
    assert size_unit(values) == unit


def test_formatting():
    assert format_bytes(128 * 2**20) == "128.0 MiB"
    assert format_bytes(None) == "-"
    assert format_seconds(0.1234) == "123 ms"
    assert format_seconds(4.321) == "4.32 s"

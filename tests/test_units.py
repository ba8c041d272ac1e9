import pytest

from condorspawner.units import (
    UnitError,
    format_duration_s,
    format_size_mb,
    parse_duration_s,
    parse_size_mb,
)


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("4GB", 4096),
        ("4G", 4096),
        ("4gib", 4096),
        ("512MB", 512),
        ("512m", 512),
        ("4096", 4096),
        (" 2 GB ", 2048),
        ("1.5GB", 1536),
        ("1TB", 1048576),
        ("1024KB", 1),
        ("1K", 1),
        (2048, 2048),
    ],
)
def test_sizes_parse_the_way_users_write_them(text, mb):
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize("text", ["", "GB", "4 XB", "-1", "four", "4GB4", "1e3", True, 1.5, None])
def test_bad_sizes_are_refused_with_an_example(text):
    with pytest.raises(UnitError, match=r"is not a size|is negative"):
        parse_size_mb(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5400),
        ("2h", 7200),
        ("1d", 86400),
        ("3600", 3600),
        ("1h30m", 5400),
        ("45s", 45),
        ("1.5h", 5400),
        (" 2H ", 7200),
        (60, 60),
    ],
)
def test_durations_parse(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2w", "1h 3x", "-5", "soon", False, 2.5])
def test_bad_durations_are_refused(text):
    with pytest.raises(UnitError, match=r"is not a duration|is negative"):
        parse_duration_s(text)


def test_formatting_reads_back():
    for mb in (1, 512, 1536, 4096, 1048576):
        assert parse_size_mb(format_size_mb(mb)) == mb
    for seconds in (0, 45, 5400, 86400, 90061):
        assert parse_duration_s(format_duration_s(seconds)) == seconds
    assert format_size_mb(4096) == "4GB"
    assert format_duration_s(5400) == "1h30m"

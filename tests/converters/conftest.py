from __future__ import annotations

import pytest

import converters_support as S



@pytest.fixture(scope="session")
def good(tmp_path_factory):
    """{(fmt, sub): path} of 16 MiB disks holding the same data, plus the raw source at 'src'."""
    d = tmp_path_factory.mktemp("good")
    raw = S.source_raw(d / "source.img")
    out = {"src": raw}
    for fmt, sub in S.GOOD:
        out[(fmt, sub)] = S.make_disk(d, raw, fmt, sub)
    return out

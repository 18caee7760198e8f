"""Version folder names: they sort by time, whatever the key."""

from __future__ import annotations

import datetime

from builder.rebuild import versions


def test_a_second_version_in_the_same_second_sorts_after_the_first(tmp_path):
    when = datetime.datetime(2026, 11, 29, 7, 55, 37, tzinfo=datetime.timezone.utc)
    first = versions.version_name(when, "zzzz9999")
    (tmp_path / first).mkdir()
    # a key that sorts before the first one's, published within the same second
    second = versions._free_name(tmp_path, when, "aaaa0000")
    (tmp_path / second).mkdir()
    assert versions.versions(tmp_path) == [first, second]
    assert second == "20261129T075538Z-aaaa0000"
    # a clock that went back still gives a name after the newest
    third = versions._free_name(tmp_path, when - datetime.timedelta(hours=1), "bbbb")
    assert third == "20261129T075539Z-bbbb" and sorted([first, second, third])[-1] == third

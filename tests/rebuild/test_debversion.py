"""Debian version ordering, checked against dpkg --compare-versions itself."""

from __future__ import annotations

import subprocess

import pytest

from builder.rebuild.debversion import compare

PAIRS = [("1.0", "1.0"), ("1.0", "1.1"), ("1.0~rc1", "1.0"), ("1.0", "1.0+b1"), ("2.36-9", "2.36-9+deb12u4"),
         ("3.0.11-1", "3.0.13-1~deb12u1"), ("1:0.9", "2.0"), ("0:1.0", "1.0"), ("1.0-1", "1.0-1.1"),
         ("1.0a", "1.0"), ("1.0.0", "1.0"), ("1.00", "1.0"), ("1.0~", "1.0~~"), ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
         ("252.22-1~deb12u1", "252.30-1~deb12u2"), ("6.1.0-28", "6.1.0-9"), ("1.2.3-4ubuntu1", "1.2.3-4"),
         ("10", "9"), ("a", "b"), ("2.0-1", "2.0-a"), ("1.0+dfsg", "1.0-dfsg")]


def _dpkg(a: str, b: str) -> int:
    for op, val in (("lt", -1), ("eq", 0), ("gt", 1)):
        if subprocess.run(["dpkg", "--compare-versions", a, op, b], capture_output=True).returncode == 0:
            return val
    raise AssertionError(f"dpkg could not compare {a} and {b}")


@pytest.mark.parametrize("a,b", PAIRS)
def test_compare_agrees_with_dpkg(a, b):
    sign = (compare(a, b) > 0) - (compare(a, b) < 0)
    assert sign == _dpkg(a, b)
    assert (compare(b, a) > 0) - (compare(b, a) < 0) == -sign

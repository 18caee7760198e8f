"""builder.host.proc Limits: the rlimits reach the child (core files off for untrusted work)."""

from __future__ import annotations

from builder.host.proc import Limits, run


def test_core_and_file_size_limits_reach_the_child():
    out = run(["sh", "-c", "ulimit -c; ulimit -f"], what="ulimit", timeout=10,
              limits=Limits(core_size=0, file_size=1 << 20)).stdout.split()
    assert out == ["0", str((1 << 20) // 512)] or out == ["0", str((1 << 20) // 1024)]

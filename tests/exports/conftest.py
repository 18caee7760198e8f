"""One small source image, exported once per session in every format by the real CLI
(``ironforge export``); the per-format tests read the results back with real consumers."""

from __future__ import annotations

import json

import pytest

from exports_support import ALL, Exported, cli, make_source


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    tmp = tmp_path_factory.mktemp("exports")
    src = make_source(tmp / "src.qcow2")
    res = cli("export", str(src), "--name", "tiny", "--output-dir", str(tmp / "out"), "--memory", "512",
              "--cpus", "2", "--firmware", "uefi", "--jobs", "2", "--json", *[a for f in ALL for a in ("--format", f)])
    return Exported(src=src, dir=tmp / "out" / "tiny", result=json.loads(res.stdout))

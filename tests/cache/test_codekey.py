"""Code digests: which files a stage's key covers, and which edits change them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from builder.cache.codekey import CodeDigests


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A throw-away package ``ckpkg_<n>`` on sys.path: write its files with ``put``."""
    name = f"ckpkg_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / name
    root.mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))

    def put(rel: str, text: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    put("__init__.py", "")
    return name, put


def test_closure_follows_project_imports_only(pkg):
    name, put = pkg
    put("stage.py", """
        import json, os                      # stdlib: not hashed
        from . import helper
        from .sub import deep
        from builder.errors import BuildError
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from . import only_for_types
        def run():
            from .lazy import thing          # a function-level import still runs
            return helper.x + deep.y
        """)
    put("helper.py", "x = 1\n")
    put("sub/__init__.py", "")
    put("sub/deep.py", "y = 2\n")
    put("lazy.py", "thing = 3\n")
    put("only_for_types.py", "z = 4\n")
    files = CodeDigests().closure(f"{name}.stage")
    assert set(files) == {f"{name}/{f}" for f in ("__init__.py", "stage.py", "helper.py", "sub/__init__.py",
                                                   "sub/deep.py", "lazy.py")} | {
        "builder/__init__.py", "builder/errors.py"}
    assert list(files) == sorted(files)  # deterministic order


def test_comments_and_docstrings_do_not_change_the_digest_code_does(pkg):
    name, put = pkg
    put("stage.py", '"""Doc."""\ndef run():\n    return 1\n')
    before = CodeDigests().closure(f"{name}.stage")
    put("stage.py", '"""Other doc."""\n\n# why it is so\ndef run():\n    """more words"""\n    return 1  # same\n')
    assert CodeDigests().closure(f"{name}.stage") == before
    put("stage.py", '"""Doc."""\ndef run():\n    return 2\n')
    after = CodeDigests().closure(f"{name}.stage")
    assert after[f"{name}/stage.py"] != before[f"{name}/stage.py"]
    assert after[f"{name}/__init__.py"] == before[f"{name}/__init__.py"]


def test_a_digest_is_memoised_per_instance(pkg):
    name, put = pkg
    put("stage.py", "def run():\n    return 1\n")
    memo = CodeDigests()
    first = memo.closure(f"{name}.stage")
    put("stage.py", "def run():\n    return 2\n")
    assert memo.closure(f"{name}.stage") == first          # one process, one answer
    assert CodeDigests().closure(f"{name}.stage") != first  # a new engine sees the edit


def test_real_stages_cover_their_helpers():
    files = CodeDigests().closure("builder.stages.disk")
    assert {"builder/stages/disk.py", "builder/linux/diskimage.py", "builder/stage.py"} <= set(files)
    assert not any(f.startswith(("click", "json")) for f in files)
    assert "builder/cli.py" not in files and "builder/engine.py" not in files


def test_a_script_run_directly_hashes_like_its_import(tmp_path, monkeypatch):
    script = tmp_path / "ckscript.py"
    script.write_text("from builder import errors\ndef run():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = CodeDigests().closure("ckscript")
    fake_main = type(sys)("__main__")
    fake_main.__file__ = str(script)
    fake_main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", fake_main)

    def run():
        return 1
    run.__module__ = "__main__"
    assert CodeDigests().for_functions(run) == imported

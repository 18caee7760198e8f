"""The machine's configuration file (builder/user_config.py): where it is found, what it may
hold, and that every mistake in it is a usage error naming the file, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder import user_config
from builder.cache.remote.cache import RemoteCache
from builder.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
GOOD = '[cache]\nremote = "oci+http://127.0.0.1:5000/ironforge/stages"\nremote_readonly = true\n'


def write(tmp_path: Path, text: str | bytes, name: str = "config.toml") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_found_under_xdg_config_home_and_absent_is_empty(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path / "home")}
    assert user_config.load(env).path is None
    assert user_config.load(env).get("cache.remote") is None
    (tmp_path / "ironforge").mkdir()
    p = write(tmp_path / "ironforge", GOOD)
    cfg = user_config.load(env)
    assert cfg.path == p and cfg.get("cache.remote").endswith("/ironforge/stages")
    assert cfg.get("cache.remote_readonly") is True
    # without XDG_CONFIG_HOME: ~/.config
    home = tmp_path / "home"
    (home / ".config" / "ironforge").mkdir(parents=True)
    write(home / ".config" / "ironforge", '[cache]\nremote_readonly = false\n')
    cfg = user_config.load({"HOME": str(home)})
    assert cfg.get("cache.remote_readonly") is False and cfg.get("cache.remote") is None


def test_flag_beats_environment_beats_file(tmp_path):
    cfg = user_config.load({"IRONFORGE_CONFIG": str(write(tmp_path, GOOD))})
    r = RemoteCache.from_options(None, False, env={}, config=cfg)
    assert str(r.address) == "oci+http://127.0.0.1:5000/ironforge/stages" and r.readonly
    r = RemoteCache.from_options(None, False, env={"IRONFORGE_CACHE_REMOTE": "oci://reg.example/a"}, config=cfg)
    assert str(r.address) == "oci://reg.example/a"
    r = RemoteCache.from_options("oci://flag.example/b", False, env={"IRONFORGE_CACHE_REMOTE": "oci://reg.example/a"},
                                 config=cfg)
    assert str(r.address) == "oci://flag.example/b"
    assert RemoteCache.from_options(None, False, env={}, config=user_config.UserConfig(None)) is None


@pytest.mark.parametrize("text, says", [
    ('[cache]\nremote = "oci://a/b"\nremote = "x"\n', "not valid TOML"),
    ('[cache]\nremot = "oci://a/b"\n', "unknown setting 'cache.remot' (did you mean 'cache.remote'?)"),
    ('[build]\narch = "amd64"\n', "unknown setting 'build.arch'"),
    ('[cache]\nremote_readonly = "yes"\n', "cache.remote_readonly must be true or false"),
    ('[cache]\nremote = 5\n', "cache.remote must be an address"),
    ('[cache]\nremote = "oci://a/b\\nX"\n', "on one line"),
    (b"\xff\xfe[cache]\n", "not valid TOML"),
    ("# " + "x" * (user_config.MAX_BYTES + 10) + "\n", "over 64 KiB"),
])
def test_every_mistake_is_a_usage_error_naming_the_file(tmp_path, text, says):
    p = write(tmp_path, text)
    with pytest.raises(UsageError) as e:
        user_config.load({"IRONFORGE_CONFIG": str(p)})
    assert says in e.value.message and str(p) in e.value.message


def test_named_file_must_exist(tmp_path):
    with pytest.raises(UsageError, match="not a file"):
        user_config.load({"IRONFORGE_CONFIG": str(tmp_path / "missing.toml")})


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "IRONFORGE_CACHE_REMOTE": "", **env})


def test_cli_bad_address_in_the_file_exits_2_naming_file_and_key(tmp_path):
    p = write(tmp_path, '[cache]\nremote = "http://registry.example/x"\n')
    r = cli("recipes", "list", env={"IRONFORGE_CONFIG": str(p)})
    assert r.returncode == 2, r.stderr
    assert f"{p} (cache.remote)" in r.stderr and "not an OCI registry address" in r.stderr
    assert "Traceback" not in r.stderr
    # credentials in the address are never echoed, whichever source holds them
    write(tmp_path, '[cache]\nremote = "oci://alice:s3cret@registry.example/x"\n')
    r = cli("recipes", "list", env={"IRONFORGE_CONFIG": str(p)})
    assert r.returncode == 2 and "s3cret" not in r.stderr + r.stdout and "holds credentials" in r.stderr


def test_cli_good_file_changes_nothing_else(tmp_path):
    r = cli("recipes", "list", env={"IRONFORGE_CONFIG": str(write(tmp_path, GOOD))})
    assert r.returncode == 0, r.stderr
    assert "debian-12-amd64" in r.stdout

"""Recipe loading: shipped recipes, extends, every problem at once, did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import recipe as R
from builder.errors import RecipeError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.parametrize("name", [p.stem for p in sorted(RECIPES.glob("*.toml"))])
def test_shipped_recipes_are_valid(name):
    r = R.load(name, RECIPES)
    assert r.family in ("debian", "windows")
    assert r.arch in ("x86_64", "i686")
    assert len(r.digest) == 64


def test_required_recipes_exist():
    names = {p.stem for p in RECIPES.glob("*.toml")}
    assert {"debian-12-amd64", "debian-12-i386", "debian-12-amd64-installer",
            "debian-12-i386-installer", "debian-13-amd64"} <= names


def test_extends_merges_tables_and_replaces_lists(tmp_path):
    (tmp_path / "base.toml").write_text(
        'arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n'
        '[build]\npackages = ["a", "b"]\nvariant = "minbase"\n[customize]\nhostname = "base"\n')
    (tmp_path / "child.toml").write_text(
        'extends = "base"\narch = "i686"\n[build]\npackages = ["c"]\n[customize]\ntimezone = "Europe/Paris"\n')
    r = R.load(str(tmp_path / "child.toml"), tmp_path)
    assert r.arch == "i686" and r.family_arch == "i386"
    assert r.get("build.packages") == ["c"]          # lists replace
    assert r.get("build.variant") == "minbase"       # tables merge key by key
    assert r.get("customize.hostname") == "base"
    assert r.get("customize.timezone") == "Europe/Paris"
    assert [p.name for p in r.chain] == ["base.toml", "child.toml"]


@pytest.mark.parametrize("word,internal", [("amd64", "x86_64"), ("x86_64", "x86_64"), ("x64", "x86_64"),
                                          ("i386", "i686"), ("i686", "i686"), ("x86", "i686")])
def test_arch_words_normalise(tmp_path, word, internal):
    (tmp_path / "r.toml").write_text(f'arch = "{word}"\n[os]\nfamily = "debian"\nrelease = "bookworm"\n')
    r = R.load(str(tmp_path / "r.toml"))
    assert r.arch == internal
    assert r.release == "12"  # codename normalised too


def test_every_mistake_reported_at_once(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n'
                 '[disk]\nsize = 12.5\npartition_tabel = "gpt"\n'
                 '[build]\nmethod = "magic"\n[verify]\nmemory = "lots"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    probs = {p.key: p for p in ei.value.problems}
    assert set(probs) == {"disk.size", "disk.partition_tabel", "build.method", "verify.memory"}
    assert probs["disk.partition_tabel"].suggestion == "disk.partition_table"
    assert probs["build.method"].got == '"magic"'
    assert "bootstrap" in probs["build.method"].expected
    assert all(p.file == str(f) for p in probs.values())


def test_problem_names_the_file_it_came_from(tmp_path):
    (tmp_path / "base.toml").write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n'
                                        '[disk]\nsize = "huge"\n')
    (tmp_path / "child.toml").write_text('extends = "base"\n[customize]\nhostnam = "x"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(tmp_path / "child.toml"), tmp_path)
    files = {p.key: Path(p.file).name for p in ei.value.problems}
    assert files == {"disk.size": "base.toml", "customize.hostnam": "child.toml"}


def test_secrets_only_by_reference(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n'
                 '[customize]\nroot_password = "hunter2"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    (p,) = ei.value.problems
    assert p.key == "customize.root_password" and "env" in p.expected
    # the secret itself is echoed only as what was found; it must not be a valid value
    f.write_text('arch = "amd64"\n[os]\nfamily = "debian"\nrelease = "12"\n'
                 '[customize]\nroot_password = { env = "ROOT_PW" }\n')
    assert R.load(str(f)).get("customize.root_password") == {"env": "ROOT_PW"}


def test_debian_13_i386_is_refused(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('extends = "debian-13-amd64"\narch = "i386"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f), RECIPES)
    (p,) = ei.value.problems
    assert p.key == "arch" and "Debian 13 ships no i386" in p.expected


def test_extends_cycle_and_missing_parent(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b"\n')
    (tmp_path / "b.toml").write_text('extends = "a"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(tmp_path / "a.toml"), tmp_path)
    assert any("cycle" in p.got for p in ei.value.problems)
    (tmp_path / "c.toml").write_text('extends = "debian-12-amd6"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(tmp_path / "c.toml"), RECIPES)
    assert any("debian-12-amd64" in p.got for p in ei.value.problems)


def test_toml_syntax_error(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('arch = "amd64\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    assert ei.value.problems[0].expected == "valid TOML"


def test_installer_method_needs_installer_source(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('extends = "debian-12-amd64"\n[build]\nmethod = "installer"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f), RECIPES)
    assert [p.key for p in ei.value.problems] == ["sources"]

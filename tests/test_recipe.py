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


# -- hostile files: every one a RecipeError naming the file, never a traceback -----------------

HEAD = 'arch = "amd64"\nos = { family = "debian", release = "12" }\n'

HOSTILE = {
    "deep-array": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-inline-tables": b"a = " + b"{b = " * 3000 + b"1" + b"}" * 3000 + b"\n",
    "deep-but-parsable": b"a = " + b"[" * 200 + b"]" * 200 + b"\n",
    "huge": HEAD.encode() + b"# padding\n" * ((R.MAX_FILE_BYTES // 10) + 1),
    "binary": bytes(range(256)) * 8,
    "latin-1": HEAD.encode() + 'description = "caf\xe9"\n'.encode("latin-1"),
    "nul": HEAD.encode() + b'description = "a\x00b"\n',
    "utf-16": HEAD.encode("utf-16"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_files_are_recipe_errors_naming_the_file(tmp_path, kind):
    f = tmp_path / "hostile.toml"
    f.write_bytes(HOSTILE[kind])
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    assert ei.value.exit_code == 2
    assert {p.file for p in ei.value.problems} == {str(f)}
    assert any(p.key == "" for p in ei.value.problems)   # the file itself, not a key
    # through extends, the parent that is broken is the one named
    (tmp_path / "child.toml").write_text('extends = "hostile"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(tmp_path / "child.toml"), tmp_path)
    assert str(f) in {p.file for p in ei.value.problems}


def test_nesting_below_the_limit_still_loads(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(HEAD + "[customize]\ncommands = [\"true\"]\n")
    assert R.load(str(f)).get("customize.commands") == ["true"]


def test_a_long_extends_chain_is_refused(tmp_path):
    (tmp_path / "r0.toml").write_text(HEAD)
    for i in range(1, R.MAX_CHAIN + 3):
        (tmp_path / f"r{i}.toml").write_text(f'extends = "r{i - 1}"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(tmp_path / f"r{R.MAX_CHAIN + 2}.toml"), tmp_path)
    assert any("extends chain" in p.expected for p in ei.value.problems)
    assert R.load(str(tmp_path / "r5.toml"), tmp_path).get("arch") == "amd64"


# -- strings that land in line-based files ------------------------------------------------------

LINE_BREAKS = [
    ("customize.users[0].groups", '[[customize.users]]\nname = "a"\ngroups = ["adm\\nroot"]\n'),
    ("customize.users[0].groups", '[[customize.users]]\nname = "a"\ngroups = ["adm,root"]\n'),
    ("customize.users[0].ssh_keys", '[[customize.users]]\nname = "a"\nssh_keys = ["ssh-ed25519 A\\nssh-rsa B"]\n'),
    ("customize.users[0].shell", '[[customize.users]]\nname = "a"\nshell = "/bin/sh:x"\n'),
    ("customize.users[0].shell", '[[customize.users]]\nname = "a"\nshell = "/bin/sh\\u0000"\n'),
    ("installer.extra_preseed", '[installer]\nextra_preseed = ["d-i a string b\\nd-i c string d"]\n'),
    ("installer.extra_preseed", '[installer]\nextra_preseed = ["d-i a string b\\rx"]\n'),
    ("description", 'description = "two\\nlines"\n'),
    ("customize.files[0].path", '[[customize.files]]\npath = "/etc/a\\nb"\ncontent = ""\n'),
    ("customize.files[0].path", '[[customize.files]]\npath = "/etc/../shadow"\ncontent = ""\n'),
    ("customize.files[0].source", '[[customize.files]]\npath = "/etc/a"\nsource = "x\\ny"\n'),
    ("customize.commands", '[customize]\ncommands = ["echo \\u0000"]\n'),
    ("sources[0].path", '[[sources]]\nname = "s"\npath = "a\\u001bb"\n'),
    ("build.mirror", '[build]\nmirror = "http://deb.debian.org/debian\\u0000"\n'),
]


@pytest.mark.parametrize("key,body", LINE_BREAKS)
def test_values_that_would_break_a_config_line_are_refused(tmp_path, key, body):
    f = tmp_path / "r.toml"
    f.write_text(HEAD + body)
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    assert key in [p.key for p in ei.value.problems]


def test_multi_line_commands_and_content_stay_allowed(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(HEAD + '[customize]\ncommands = ["set -e\\necho hi"]\n'
                 '[[customize.files]]\npath = "/etc/motd"\ncontent = "line 1\\nline 2\\n"\n')
    assert R.load(str(f)).get("customize.files")[0]["content"] == "line 1\nline 2\n"


def test_installer_first_user_must_suit_the_installer(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('extends = "debian-12-amd64-installer"\n[[customize.users]]\nname = "_svc"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f), RECIPES)
    assert [p.key for p in ei.value.problems] == ["customize.users[0].name"]


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", [".", "..", ".hidden"])
def test_recipe_names_cannot_escape_the_output_folder(tmp_path, stem):
    f = tmp_path / f"{stem}.toml"
    f.write_text(HEAD)
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    assert ei.value.problems[0].file == str(f) and "output folder" in ei.value.problems[0].expected


@pytest.mark.parametrize("name", [".", "..", "a/b", "../x"])
def test_source_names_are_plain(tmp_path, name):
    f = tmp_path / "r.toml"
    f.write_text(HEAD + f'[[sources]]\nname = "{name}"\nurl = "http://example.org/x"\nsha256 = "{"0" * 64}"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    assert [p.key for p in ei.value.problems] == ["sources[0].name"]


# -- URLs with credentials -------------------------------------------------------------------------

@pytest.mark.parametrize("key,body", [
    ("build.mirror", '[build]\nmirror = "http://bob:Sekr3tPw@mirror.example/debian"\n'),
    ("build.mirror", '[build]\nmirror = "https://Sekr3tPw@mirror.example/debian"\n'),
    ("sources[0].url", '[[sources]]\nname = "s"\nurl = "https://bob:Sekr3tPw@x.example/a.iso"\n'
                       f'sha256 = "{"0" * 64}"\n'),
    ("sources[0].debian_installer.mirror",
     '[[sources]]\nname = "s"\ndebian_installer = { release = "12", mirror = "http://u:Sekr3tPw@m.example/d" }\n'),
])
def test_urls_with_credentials_are_refused_without_echoing_them(tmp_path, key, body):
    f = tmp_path / "r.toml"
    f.write_text(HEAD + body)
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    (p,) = [p for p in ei.value.problems if p.key == key]
    assert "credentials" in p.expected
    assert "Sekr3tPw" not in ei.value.message and "Sekr3tPw" not in str(ei.value.to_dict())


def test_inline_secret_is_not_echoed(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(HEAD + '[customize]\nroot_password = "hunter2-inline"\n')
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    assert "hunter2" not in ei.value.message and "plain string" in ei.value.message


# -- host paths ---------------------------------------------------------------------------------

@pytest.fixture()
def host_layout(tmp_path):
    rdir, outside = tmp_path / "recipes", tmp_path / "host"
    (rdir / "files").mkdir(parents=True)
    outside.mkdir()
    (outside / "private.key").write_text("host private key\n")
    (rdir / "files" / "ok.txt").write_text("fine\n")
    (rdir / "files" / "escape").symlink_to(outside / "private.key")
    return rdir, outside


HOST_READS = [
    ("customize.files[0].source", '[[customize.files]]\npath = "/etc/x"\nsource = "{p}"\n'),
    ("sources[0].path", '[[sources]]\nname = "s"\npath = "{p}"\n'),
    ("customize.root_password", '[customize]\nroot_password = {{ file = "{p}" }}\n'),
    ("customize.users[0].password", '[[customize.users]]\nname = "a"\npassword = {{ file = "{p}" }}\n'),
]


@pytest.mark.parametrize("key,body", HOST_READS)
@pytest.mark.parametrize("spelling", ["absolute", "dotdot", "symlink"])
def test_host_reads_outside_the_recipe_folder_are_refused(host_layout, key, body, spelling):
    rdir, outside = host_layout
    p = {"absolute": str(outside / "private.key"), "dotdot": "files/../../host/private.key",
         "symlink": "files/escape"}[spelling]
    f = rdir / "r.toml"
    f.write_text(HEAD + body.format(p=p))
    with pytest.raises(RecipeError) as ei:
        R.load(str(f))
    (prob,) = ei.value.problems
    assert prob.key == key and prob.file == str(f)
    assert p in prob.got and str(outside / "private.key") in prob.got
    assert "--allow-host-path" in prob.expected and "--allow-host-path" in ei.value.hint
    # allowed explicitly, the same recipe loads and keeps the directories for the stages
    r = R.load(str(f), allow_host_paths=(outside,))
    assert r.host_paths == (outside,)


@pytest.mark.parametrize("key,body", HOST_READS)
def test_host_reads_inside_the_recipe_folder_need_nothing(host_layout, key, body):
    rdir, _ = host_layout
    f = rdir / "r.toml"
    f.write_text(HEAD + body.format(p="files/ok.txt"))
    assert R.load(str(f)).host_paths == ()

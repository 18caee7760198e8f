"""The settings table and a property test: random documents never crash the validator."""

from __future__ import annotations

import tomllib

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from builder import recipe as R
from builder import settings as S
from builder.errors import RecipeProblem

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=12))
keys = st.one_of(st.sampled_from(sorted({k.split(".")[-1].replace("[]", "") for k in S.BY_KEY}
                                        | {"os", "disk", "build", "customize", "verify", "sources",
                                           "users", "debian_installer", "outputs"})),
                 st.text(min_size=1, max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=12)
documents = st.dictionaries(keys, values, max_size=8)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_validator_never_crashes(doc):
    values, problems = R.validate(doc, file="fuzz.toml")
    assert all(isinstance(p, RecipeProblem) and p.file == "fuzz.toml" for p in problems)
    if problems:
        assert all(str(p) for p in problems)


def _near_valid():
    base = {"arch": "amd64", "os": {"family": "debian", "release": "12"}}
    return st.fixed_dictionaries({}).map(lambda _: dict(base))


@hsettings(max_examples=300, deadline=None)
@given(st.sampled_from([s.key for s in S.SETTINGS if "[]" not in s.key and s.key != "extends"]), values)
def test_any_value_at_any_key_is_accepted_or_reported(key, value):
    doc = {"arch": "amd64", "os": {"family": "debian", "release": "12"}}
    node = doc
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    values_, problems = R.validate(doc, file="x.toml")
    if problems:
        assert all(p.key for p in problems)
    else:
        assert isinstance(values_, dict)


@hsettings(max_examples=200, deadline=None)
@given(documents)
def test_cli_exits_2_on_bad_documents(tmp_path_factory, doc):
    """Through the real CLI: random TOML documents give exit 0 or 2, never a traceback."""
    from click.testing import CliRunner

    from builder.cli import cli
    import tomli_w_fallback as tw  # local tiny writer
    d = tmp_path_factory.mktemp("r")
    f = d / "r.toml"
    try:
        f.write_text(tw.dumps(doc))
        tomllib.loads(f.read_text())
    except (ValueError, TypeError):
        return
    res = CliRunner().invoke(cli, ["recipes", "validate", str(f)])
    assert res.exit_code in (0, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    if res.exit_code == 2:
        assert "expected" in res.output


def test_schema_lists_every_setting():
    md = S.schema_markdown()
    for s in S.SETTINGS:
        assert f"`{s.key}`" in md


def test_sizes_and_durations():
    assert S.Size().parse("4G") == 4 << 30
    assert S.Size().parse("512M") == 512 << 20
    assert S.Duration().parse("90m") == 5400
    assert S.Duration().parse(45) == 45
    for bad in ("four", -1, True, "4X"):
        try:
            S.Size().parse(bad)
        except S.Bad:
            continue
        raise AssertionError(f"{bad!r} accepted")


# -- "validates => plans cleanly" --------------------------------------------------------------
#
# Recipes generated from the settings table itself (mostly well-formed values, some hostile
# ones); for every one that validates, the stage list, each stage's key material (offline: an
# upstream pin never fetched is the one allowed FetchError, as in `plan --offline`) and the
# inputs each stage builds from the recipe must come out, or fail as a usage or environment
# error (exit 2/3). Anything else is an internal error a user would meet at build time.

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from builder import pipeline  # noqa: E402
from builder.cache.codekey import CodeDigests  # noqa: E402
from builder.cache.store import Store  # noqa: E402
from builder.engine import Engine  # noqa: E402
from builder.errors import FetchError, IronforgeError  # noqa: E402
from builder.host.accel import Accel  # noqa: E402
from builder.recipe import Recipe, canonical_json  # noqa: E402
from builder.stage import StageContext  # noqa: E402

HOSTILE_STRINGS = ["", ".", "..", "../x", "/etc/passwd", "a\nb", "a\rb", "a\x00b", "a\tb", "x,y",
                   "a:b", "~/x", "é", " ", "a\u2028b", "-rf", "$(reboot)", "a b\nc d", "x\n", "\x1b[0m"]
HOST_FILES = ["files/ok.txt", "missing.txt", "../outside.txt", "/etc/hostname", "files/link-out",
              "files/../files/ok.txt", "~/.bashrc"]
URLS = ["http://deb.debian.org/debian", "https://mirror.example:8443/debian/", "http://127.0.0.1:9/d",
        "http://u:p@mirror.example/debian", "http://[::1]:9/debian", "http://[::1", "https://h:99999/",
        "http://h/d?x=1", "http://h/d#f", "ftp://h/d", "http://", "http://h/\x00"]


def _mostly(good, bad):
    """``good`` seven times in eight: a recipe with a hostile value in every row never validates."""
    # (hypothesis favours boundary values: the odd one out is a middle one)
    return st.integers(0, 7).flatmap(lambda i: bad if i == 5 else good)


def _value(t: S.Type):
    """A strategy for values of setting type ``t``; None for a type this test does not know
    (a family's new types: their rows are then simply left out)."""
    if isinstance(t, S.SecretRef):
        return st.one_of(st.builds(lambda e: {"env": e}, st.sampled_from(["IRONFORGE_PROP_UNSET", "HOME"])),
                         st.builds(lambda f: {"file": f}, st.sampled_from(HOST_FILES)))
    if isinstance(t, S.Url):
        return _mostly(st.sampled_from(URLS[:3]), st.sampled_from(URLS))
    if isinstance(t, S.HostFile):
        return _mostly(st.sampled_from(HOST_FILES), st.sampled_from(HOSTILE_STRINGS))
    if isinstance(t, S.Enum):
        return st.sampled_from(t.choices)
    if isinstance(t, S.EnumList):
        return st.lists(st.sampled_from(t.item.choices), max_size=3)
    if isinstance(t, S.StrList):
        item = _value(t.item)
        return st.lists(item, max_size=3) if item is not None else None
    if isinstance(t, S.Str):
        good = st.from_regex(t.pattern, fullmatch=True) if t.pattern else \
            st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
        return _mostly(good, st.sampled_from(HOSTILE_STRINGS))
    if isinstance(t, S.Bool):
        return st.booleans()
    if isinstance(t, S.Int):
        lo, hi = t.lo if t.lo is not None else -5, t.hi if t.hi is not None else 5
        return _mostly(st.integers(lo, hi), st.integers(lo - 1, hi + 1))
    if isinstance(t, S._Scaled):
        return st.one_of(st.integers(t.lo, min(t.hi, t.lo * 8)), st.sampled_from(["4G", "90m", "1h", "0"]))
    if isinstance(t, S.ArchWord):
        return _mostly(st.sampled_from(["amd64", "i386", "x86_64", "i686", "x64", "x86"]), st.just("arm64"))
    return None


def _table(prefix: str, required_only: bool = False):
    """A strategy for the table at ``prefix`` ('' for the whole recipe), row by row."""
    fields = {}
    for name in S.children(prefix):
        key = f"{prefix}.{name}" if prefix else name
        if key == "extends":
            continue
        setting = S.BY_KEY.get(key)
        if setting is None:                                   # a sub-table: present when it holds a required row
            fields[name] = (any(s.required for k, s in S.BY_KEY.items() if k.startswith(key + ".")
                                and "[]" not in k[len(key):]), _table(key))
        elif isinstance(setting.type, S.TableList):
            items = _table(key + "[]")
            if key == "sources":  # "exactly one of url, path, debian_installer" is rare by chance
                items = st.one_of(items, st.builds(lambda n, di: {"name": n, "debian_installer": di},
                                                   st.sampled_from(["installer", "di"]),
                                                   _table(key + "[].debian_installer")))
            fields[name] = (False, st.lists(items, max_size=2))
        else:
            v = _value(setting.type)
            if key == "os.release":
                v = _mostly(st.sampled_from(["12", "13", "bookworm", "trixie"]), st.just("11"))
            if key == "os.family":
                v = _mostly(st.just("debian"), st.sampled_from(setting.type.choices))
            if v is not None:
                fields[name] = (setting.required, v)

    @st.composite
    def table(draw):
        out = {}
        for name, (required, strat) in fields.items():
            # required rows nearly always, the others about one time in four
            if draw(st.integers(0, 19)) == 13 if required else draw(st.integers(0, 3)) != 2:
                continue
            out[name] = draw(strat)
        return out
    return table()


@st.composite
def _recipes(draw):
    doc = draw(_table(""))
    # the installer method needs an installer source, which chance alone seldom pairs with it
    if draw(st.integers(0, 2)) == 1:
        doc.setdefault("build", {})["method"] = "installer"
        doc["sources"] = [{"name": "di", "debian_installer": draw(_table("sources[].debian_installer"))}]
    return doc


RECIPES_FROM_TABLE = _recipes()


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("prop") / "recipes"
    (d / "files").mkdir(parents=True)
    (d / "files" / "ok.txt").write_text("a file inside the recipe's folder\n")
    (d.parent / "outside.txt").write_text("outside\n")
    (d / "files" / "link-out").symlink_to(d.parent / "outside.txt")
    return d


@pytest.fixture(scope="module")
def code():
    """One memo of the code digests for every plan here: the files do not change during the
    run, and re-reading the import closure for each of thousands of plans was most of their time."""
    return CodeDigests()


def _ok(exc: IronforgeError) -> None:
    assert exc.exit_code in (2, 3), f"{type(exc).__name__} (exit {exc.exit_code}): {exc.message}"


def _stage_inputs(recipe: Recipe, names: list[str]) -> None:
    """What each stage builds from the recipe before doing any work."""
    from builder.fetch import sources
    from builder.linux import customize, mmdebstrap
    from builder.stages import bootstrap, drivers, install, verify

    def attempt(fn):
        try:
            fn()
        except IronforgeError as exc:
            _ok(exc)

    ctx = StageContext(recipe=recipe, accel=Accel("tcg", "test"), store=Store(recipe.dir / "cache"),
                       workdir=recipe.dir, log=logging.getLogger("prop"), offline=True)
    for src in recipe.get("sources", None) or []:
        def one(src=src):
            kind = sources.source_kind(src)
            if kind == "path":
                sources.local_path(recipe, src)
            elif kind == "debian_installer":
                sources.installer_params(recipe, src)
        attempt(one)
    if "bootstrap" in names:
        attempt(lambda: mmdebstrap.command(bootstrap.spec(ctx, 0), Path("/nonexistent/rootfs.tar")))
    if "install" in names:
        attempt(lambda: install.preseed_text(recipe, env={}))
    if "customize" in names or "disk" in names:     # the disk stage applies file-only ones
        attempt(lambda: customize.CustomizeSpec.from_recipe(recipe, env={}).summary())
    if "drivers" in names:
        attempt(lambda: drivers.modules_for(recipe))
    if "verify" in names:
        attempt(lambda: verify.target_for(recipe, Path("/nonexistent/x.qcow2"), {}))


def test_validates_implies_plans_cleanly(recipe_dir, code):
    planned = set()

    @hsettings(max_examples=300, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow])
    @given(RECIPES_FROM_TABLE)
    def check(doc):
        if _plans_cleanly(recipe_dir, doc, code):
            planned.add((doc.get("build") or {}).get("method") or "bootstrap")
    check()
    # the generator is not vacuous: valid recipes of both build methods came out of it
    assert planned == {"bootstrap", "installer"}


def _plans_cleanly(recipe_dir: Path, doc: dict, code: CodeDigests) -> bool:
    """False when ``doc`` does not validate; else plans it, failing on any internal error."""
    values, problems = R.validate(doc, file="prop.toml")
    if problems:
        return False
    recipe = Recipe(name="prop", path=recipe_dir / "prop.toml", values=values)
    try:
        names = pipeline.stage_names(recipe)
        stages = pipeline.stages_for(recipe)
    except IronforgeError as exc:
        _ok(exc)
        return False
    engine = Engine(store=Store(recipe_dir / "cache"), accel=Accel("tcg", "test"), offline=True, code=code)
    for stage in stages:
        try:
            canonical_json(engine.material(recipe, stage, None))
        except FetchError:
            pass    # an upstream pin never fetched: `plan --offline` shows it as unknown, as here
        except IronforgeError as exc:
            _ok(exc)
    _stage_inputs(recipe, names)
    return True


def _base(method: str) -> dict:
    """A valid recipe with one item in every list of tables, so every row has a place (file
    content inline: a source file's cache token is a deliberately slow scrypt)."""
    doc = {"arch": "amd64", "os": {"family": "debian", "release": "12"},
           "build": {"method": method},
           "sources": [{"name": "local", "path": "files/ok.txt"}],
           "customize": {"users": [{"name": "alice", "groups": ["adm"], "ssh_keys": ["ssh-ed25519 AAAA a"]}],
                         "files": [{"path": "/etc/motd", "content": "hi"}]}}
    if method == "installer":
        doc["sources"].append({"name": "di", "debian_installer": {"release": "12"}})
    return doc


ROW_KEYS = [s.key for s in S.SETTINGS if s.key != "extends" and not isinstance(s.type, S.TableList)
            and _value(s.type) is not None]


def _anything(t: S.Type):
    hostile = st.sampled_from(HOSTILE_STRINGS)
    return st.one_of(_value(t), hostile, st.lists(hostile, min_size=1, max_size=2),
                     st.builds(lambda h: {"file": h}, hostile))


@pytest.mark.parametrize("key", ROW_KEYS)
@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_value_anywhere_plans_cleanly(recipe_dir, code, key, data):
    """Every row of the table, each given hostile values in an otherwise valid recipe of each
    build method."""
    value = data.draw(_anything(S.BY_KEY[key].type), label="value")
    doc = _base(data.draw(st.sampled_from(["bootstrap", "installer"]), label="method"))
    _plans_cleanly(recipe_dir, _with(doc, key, value), code)


def _with(doc: dict, key: str, value) -> dict:
    """``doc`` with ``value`` at ``key`` (a list-item row goes into the list's first item)."""
    node = doc
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part[:-2], [{}])[0] if part.endswith("[]") else node.setdefault(part, {})
    node[parts[-1]] = value
    if key == "customize.files[].source":   # one of content, source: the cheap one by default
        node.pop("content", None)
    return doc


@pytest.mark.parametrize("key", ROW_KEYS)
def test_every_hostile_value_anywhere_plans_cleanly(recipe_dir, code, key):
    """The same, deterministically: every hostile string, alone, in a list and as a secret file,
    at every row (random draws reach a given row and value only by chance)."""
    for method in ("bootstrap", "installer"):
        for h in HOSTILE_STRINGS:
            for value in (h, [h], {"file": h}):
                _plans_cleanly(recipe_dir, _with(_base(method), key, value), code)

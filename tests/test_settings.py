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

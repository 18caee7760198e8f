"""Secrets: resolution by reference, errors that name the variable, hashing, cache tokens."""

from __future__ import annotations

import pickle
import subprocess

import pytest

from builder import secrets
from builder.errors import RecipeError, UsageError
from builder.secrets import Secret

# Published test vectors of "Unix crypt using SHA-256 and SHA-512" (Drepper), $6$ part.
VECTORS = [
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/"
     "YTBmSK6H9qs/y3RnOaw5v."),
    ("$6$rounds=5000$toolongsaltstring", "This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/"
     "e1JSbq3y6JMxxl8audkUEm0"),
    ("$6$rounds=1400$anotherlongsaltstring",
     "a very much longer text to encrypt.  This one even stretches over morethan one line.",
     "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwb"
     "tEW7o7UmJEiDwGqd8p4ur1"),
    ("$6$rounds=10$roundstoolow", "the minimum number is still observed",
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyU"
     "NGc0dqbpBYYBaHHrsX."),
]


@pytest.mark.parametrize("setting,password,expected", VECTORS)
def test_sha512_crypt_matches_published_vectors(setting, password, expected):
    assert secrets.sha512_crypt(password, setting) == expected


@pytest.mark.parametrize("password", ["", "x", "correct horse battery staple", "pässwörd ☃", "p" * 300])
def test_hash_password_is_random_salted_and_verifies(password):
    a, b = secrets.hash_password(password), secrets.hash_password(password)
    assert a.startswith("$6$") and b.startswith("$6$") and a != b   # random salts
    assert len(a.split("$")[2]) == 16
    assert secrets.verify_password(password, a) and secrets.verify_password(password, b)
    assert not secrets.verify_password(password + "!", a)


def test_hash_password_agrees_with_openssl():
    # An independent implementation: openssl passwd -6 with the same salt gives the same hash.
    ours = secrets.hash_password("independent check", salt="abcdefgh12345678")
    theirs = subprocess.run(["openssl", "passwd", "-6", "-salt", "abcdefgh12345678", "-stdin"],
                            input="independent check\n", capture_output=True, text=True, check=True)
    assert ours == theirs.stdout.strip()


def test_secret_never_prints_its_value():
    s = Secret("hunter2-very-secret", "env X")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s %r" % (s, s), repr([s]), repr({"k": s})):
        assert "hunter2" not in text
    assert s.reveal() == "hunter2-very-secret"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_resolve_env_and_file(tmp_path):
    assert secrets.resolve({"env": "PW"}, tmp_path, {"PW": "s3cret"}).reveal() == "s3cret"
    (tmp_path / "pw.txt").write_text("from-file\n")
    got = secrets.resolve({"file": "pw.txt"}, tmp_path, {})
    assert got.reveal() == "from-file" and str(tmp_path / "pw.txt") in got.source
    (tmp_path / "abs.txt").write_text("abs\r\n")
    # an absolute path outside the recipe's folder (cwd here) reads only when allowed
    assert secrets.resolve({"file": str(tmp_path / "abs.txt")}, None, {},
                           allowed=[tmp_path]).reveal() == "abs"


def test_secret_file_stays_inside_the_recipe_folder(tmp_path):
    rdir, outside = tmp_path / "recipe", tmp_path / "elsewhere"
    rdir.mkdir()
    outside.mkdir()
    (outside / "pw").write_text("host-secret-value\n")
    (rdir / "link").symlink_to(outside / "pw")
    for ref in ({"file": str(outside / "pw")}, {"file": "../elsewhere/pw"}, {"file": "link"}):
        with pytest.raises(UsageError) as exc:
            secrets.resolve(ref, rdir, {}, "customize.root_password")
        e = exc.value
        assert e.exit_code == 2 and "customize.root_password" in e.message
        assert str(outside / "pw") in e.message and str(rdir) in e.message
        assert "--allow-host-path" in e.hint and "host-secret-value" not in e.message + e.hint
        # the flag's directory widens it, for the same three spellings
        assert secrets.resolve(ref, rdir, {}, "k", allowed=[outside]).reveal() == "host-secret-value"
    # inside the folder, also through a symlink that stays inside, needs nothing
    (rdir / "pw").write_text("inside\n")
    (rdir / "inner-link").symlink_to(rdir / "pw")
    assert secrets.resolve({"file": "inner-link"}, rdir, {}).reveal() == "inside"
    # a token of a refused file is refused too: it is computed from the secret
    with pytest.raises(UsageError):
        secrets.cache_token({"file": "link"}, rdir, {})


def test_missing_env_secret_is_a_usage_error_naming_variable_and_key(tmp_path):
    with pytest.raises(UsageError) as exc:
        secrets.resolve({"env": "IRONFORGE_TEST_NO_SUCH_VAR"}, tmp_path, {}, "customize.root_password")
    assert exc.value.exit_code == 2
    assert "IRONFORGE_TEST_NO_SUCH_VAR" in exc.value.message
    assert "customize.root_password" in exc.value.message
    assert "IRONFORGE_TEST_NO_SUCH_VAR" in exc.value.hint
    with pytest.raises(UsageError, match="is empty"):
        secrets.resolve({"env": "E"}, tmp_path, {"E": ""}, "k")


def test_missing_or_empty_secret_file(tmp_path):
    with pytest.raises(UsageError, match=r"customize.users\[0\].password: secret file .*nope.txt"):
        secrets.resolve({"file": "nope.txt"}, tmp_path, {}, "customize.users[0].password")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        secrets.resolve({"file": "empty"}, tmp_path, {}, "k")


def test_inline_secret_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(RecipeError) as exc:
        secrets.resolve("hunter2-inline", tmp_path, {}, "customize.root_password")
    assert exc.value.exit_code == 2
    assert "hunter2" not in exc.value.message and "plain string" in exc.value.message
    with pytest.raises(RecipeError):
        secrets.resolve({"env": "A", "file": "b"}, tmp_path, {}, "k")


def test_already_hashed_values_pass_through():
    h = secrets.hash_password("pw")
    assert secrets.crypt_form(Secret(h, "env X")).reveal() == h
    yescrypt = "$y$j9T$abcdefghijklmnopqrstuv$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg"
    assert secrets.crypt_form(Secret(yescrypt, "env X")).reveal() == yescrypt
    with pytest.raises(UsageError, match="colon or whitespace") as exc:
        secrets.crypt_form(Secret(h + ":0:99999", "env X"))
    assert h not in exc.value.message
    hashed = secrets.crypt_form(Secret("plain", "env X")).reveal()
    assert hashed.startswith("$6$") and secrets.verify_password("plain", hashed)


def test_cache_token_changes_with_the_secret_and_hides_it(tmp_path):
    ref = {"env": "PW"}
    t1 = secrets.cache_token(ref, tmp_path, {"PW": "one-password"})
    assert t1 == secrets.cache_token(ref, tmp_path, {"PW": "one-password"})   # stable: cache hits
    assert t1 != secrets.cache_token(ref, tmp_path, {"PW": "another-password"})
    assert t1 != secrets.cache_token({"env": "OTHER"}, tmp_path, {"OTHER": "one-password"})
    assert "one-password" not in t1 and t1.startswith("scrypt:")
    assert secrets.cache_token(None, tmp_path, {}) == "none"
    with pytest.raises(UsageError, match="PW"):
        secrets.cache_token(ref, tmp_path, {})

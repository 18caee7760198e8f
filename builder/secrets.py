"""Secrets by reference: resolve `{ env = "NAME" }` / `{ file = "path" }`, hash, never show.

A recipe never holds a secret, only where to find it. Resolving gives a ``Secret`` whose
repr and str hide the value, so a stray log line or traceback cannot leak it. Passwords reach
an image only as SHA-512 crypt hashes (``$6$…``), made here in pure Python (the published
sha512-crypt algorithm), because the stdlib ``crypt`` module is deprecated and gone in 3.13.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as _random
from pathlib import Path
from typing import Iterable, Mapping

from builder import hostpaths
from builder.errors import RecipeError, RecipeProblem, UsageError

# Crypt forms that are already hashes and go into /etc/shadow as they are.
HASHED_PREFIXES = ("$6$", "$y$")


class Secret:
    """A secret value that never prints itself. ``reveal()`` is the one way to read it."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        self._value = value
        self.source = source          # where it came from, e.g. "env IRONFORGE_ROOT_PASSWORD"

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, from {self.source})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):
        # Pickling (multiprocessing, caches) would carry the value in clear.
        raise TypeError("a Secret cannot be pickled")


def _describe(ref: object) -> str:
    """What a bad reference looks like, without ever echoing a value that may be a password."""
    if isinstance(ref, str):
        return "a plain string (a secret is never written in a recipe)"
    if isinstance(ref, dict):
        return f"a table with keys {sorted(ref)}"
    return type(ref).__name__


def _check_ref(ref: object, key: str, recipe_file: str) -> tuple[str, str]:
    if (isinstance(ref, dict) and len(ref) == 1 and set(ref) <= {"env", "file"}
            and isinstance(next(iter(ref.values())), str) and next(iter(ref.values()))):
        kind, where = next(iter(ref.items()))
        return kind, where
    raise RecipeError([RecipeProblem(recipe_file, key, '{ env = "NAME" } or { file = "path" }',
                                     _describe(ref))])


def resolve(ref: Mapping[str, str], recipe_dir: Path | None, env: Mapping[str, str] | None = None,
            key: str = "secret", allowed: Iterable[Path] = (), recipe: str | None = None) -> Secret:
    """The secret ``ref`` points at. ``key`` is the recipe key path, used in error messages.

    A missing or empty variable or file is a problem of how the build was invoked (exit 2),
    named with the variable or path and the key that asked for it. A file must lie inside the
    recipe's folder (cwd without one) or one of the ``allowed`` directories (builder.hostpaths).
    """
    env = os.environ if env is None else env
    recipe_file = recipe or (str(recipe_dir) if recipe_dir else "recipe")
    kind, where = _check_ref(ref, key, recipe_file)
    if kind == "env":
        value = env.get(where)
        if value is None:
            raise UsageError(f"{key}: environment variable {where} is not set",
                             hint=f"export {where}=... before building (the recipe takes the "
                                  "secret from there; it is never written in the recipe)")
        if value == "":
            raise UsageError(f"{key}: environment variable {where} is empty",
                             hint=f"set {where} to the secret, or remove {key} from the recipe")
        return Secret(value, f"env {where}")
    path = hostpaths.resolve(where, recipe_dir, allowed, key=key, recipe=recipe_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{key}: secret file {path} does not exist",
                         hint="paths are relative to the recipe file's directory") from None
    except OSError as exc:
        raise UsageError(f"{key}: secret file {path} cannot be read: {exc.strerror}") from None
    # One trailing newline is how editors and `echo` end files; it is not part of the secret.
    value = text[:-1] if text.endswith("\n") else text
    value = value[:-1] if value.endswith("\r") else value
    if value == "":
        raise UsageError(f"{key}: secret file {path} is empty")
    return Secret(value, f"file {path}")


def cache_token(ref: Mapping[str, str] | None, recipe_dir: Path | None,
                env: Mapping[str, str] | None = None, key: str = "secret",
                allowed: Iterable[Path] = ()) -> str:
    """A stable token for cache keys: changes when the secret changes, and does not reveal it.

    scrypt (memory-hard, salted with the reference and key path) makes guessing the secret
    from a published cache key as costly as from a shadow hash, yet stays deterministic so an
    unchanged secret keeps its cache hit.
    """
    if ref is None:
        return "none"
    secret = resolve(ref, recipe_dir, env, key, allowed)
    salt = b"ironforge-cache-token\0" + json.dumps([key, dict(ref)], sort_keys=True).encode()
    return _scrypt_token(secret.reveal().encode("utf-8"), salt)


def _scrypt_token(data: bytes, salt: bytes) -> str:
    digest = hashlib.scrypt(data, salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return "scrypt:" + digest.hex()


def content_token(path: Path, key: str) -> str:
    """A cache-key token of a host file's content that, unlike its sha256, cannot be matched
    against guesses cheaply: a small private file (a key, a PIN) copied into an image must not
    be recoverable from a published key. Deterministic, so an unchanged file stays a hit."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return _scrypt_token(h.digest(), b"ironforge-file-token\0" + key.encode())


def is_hashed(value: str) -> bool:
    return value.startswith(HASHED_PREFIXES)


def crypt_form(secret: Secret) -> Secret:
    """The shadow-file form of a password secret: hashed now, or as given when already a hash."""
    value = secret.reveal()
    if not is_hashed(value):
        return Secret(hash_password(value), f"hash of {secret.source}")
    # A ready-made hash goes into /etc/shadow verbatim: it must not break the file's format.
    if any(c in value for c in ":\n\r\t "):
        raise UsageError(f"the secret from {secret.source} looks like a crypt hash but contains a "
                         "colon or whitespace, which /etc/shadow cannot hold",
                         hint="give the hash exactly as `openssl passwd -6` prints it, or the plain password")
    return Secret(value, f"{secret.source} (already hashed)")


# --- sha512-crypt (Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512", $6$) -------------

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ROUNDS_DEFAULT = 5000
_ROUNDS_MIN = 1000
_ROUNDS_MAX = 999_999_999
_SALT_MAX = 16
# Which digest bytes make each group of four output characters (from the specification).
_ORDER = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
          (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
          (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
          (18, 39, 60), (40, 61, 19), (62, 20, 41))


def _b64_24bit(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_ITOA64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha512_crypt(password: str, setting: str) -> str:
    """crypt(3) with a ``$6$[rounds=N$]salt`` setting (a full hash works too: its salt is used)."""
    if not setting.startswith("$6$"):
        raise ValueError("not a sha512-crypt setting")
    rest = setting[3:]
    rounds, explicit = _ROUNDS_DEFAULT, False
    if rest.startswith("rounds="):
        num, _, rest = rest[len("rounds="):].partition("$")
        rounds = min(max(int(num), _ROUNDS_MIN), _ROUNDS_MAX)
        explicit = True
    salt = rest.split("$", 1)[0][:_SALT_MAX].encode()
    key = password.encode("utf-8")

    b = hashlib.sha512(key + salt + key).digest()
    a = hashlib.sha512(key + salt)
    a.update(_repeat(b, len(key)))
    n = len(key)
    while n > 0:
        a.update(b if n & 1 else key)
        n >>= 1
    c = a.digest()
    p = _repeat(hashlib.sha512(key * len(key)).digest(), len(key)) if key else b""
    s = _repeat(hashlib.sha512(salt * (16 + c[0])).digest(), len(salt)) if salt else b""
    for i in range(rounds):
        h = hashlib.sha512(p if i & 1 else c)
        if i % 3:
            h.update(s)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()

    encoded = "".join(_b64_24bit(c[x], c[y], c[z], 4) for x, y, z in _ORDER)
    encoded += _b64_24bit(0, 0, c[63], 2)
    head = f"$6$rounds={rounds}$" if explicit else "$6$"
    return f"{head}{salt.decode()}${encoded}"


def hash_password(plain: str, salt: str | None = None) -> str:
    """``$6$<16 random chars>$…``: the SHA-512 crypt hash /etc/shadow takes."""
    if salt is None:
        salt = "".join(_random.choice(_ITOA64) for _ in range(_SALT_MAX))
    return sha512_crypt(plain, "$6$" + salt)


def verify_password(plain: str, hashed: str) -> bool:
    """True when ``hashed`` (a $6$ hash) is the hash of ``plain``: crypt again with its salt."""
    head, _, _ = hashed.rpartition("$")
    return hmac.compare_digest(sha512_crypt(plain, head + "$"), hashed)

"""Recipes: TOML files merged through ``extends``, validated against the settings table.

Validation collects every problem before reporting, each with the file it came from, its key
path, what was expected and what was found, and a did-you-mean for unknown keys.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import arch as archmod
from builder import hostpaths
from builder import settings as st
from builder.linux import releases
from builder.errors import RecipeError, RecipeProblem, UsageError

_MISSING = object()

DEBIAN_RELEASES = {r.number: r.codename for r in releases.RELEASES}
DEBIAN_CODENAMES = {v: k for k, v in DEBIAN_RELEASES.items()}

# Bounds on what a recipe file may be, checked before and right after parsing, so that a
# hostile or broken file is a RecipeError naming it, never a MemoryError or RecursionError.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32          # the settings nest 4 deep; nothing legitimate comes near this
MAX_CHAIN = 32          # recipes in one ``extends`` chain


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path | None
    values: dict[str, Any]                     # nested, validated, defaults applied
    digest: str = ""                           # sha256 of the canonical JSON of ``values``
    chain: tuple[Path, ...] = field(default_factory=tuple)  # files merged via ``extends``
    # Directories besides its own folder it may read host files from (--allow-host-path).
    host_paths: tuple[Path, ...] = ()

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Value at a dotted key path, e.g. ``recipe.get("customize.hostname")``; "name" is the
        recipe's name (its file stem), so a stage that derives ids from it can declare it in reads."""
        if key == "name":
            return self.name
        node: Any = self.values
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif default is not _MISSING:
                return default
            else:
                raise KeyError(key)
        return node

    @property
    def dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def arch(self) -> str:
        """Internal arch word: 'x86_64' or 'i686'."""
        return archmod.normalise(self.values["arch"])

    @property
    def family(self) -> str:
        return self.values["os"]["family"]

    @property
    def release(self) -> str:
        return str(self.values["os"]["release"])

    @property
    def codename(self) -> str:
        return DEBIAN_RELEASES.get(self.release, self.release)

    @property
    def family_arch(self) -> str:
        """The OS family's own arch word (Debian 'amd64'/'i386')."""
        return archmod.family_word(self.family, self.arch)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# -- finding and reading files ------------------------------------------------------------------

def default_recipes_dir() -> Path:
    env = os.environ.get("IRONFORGE_RECIPES")
    if env:
        return Path(env)
    local = Path.cwd() / "recipes"
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "recipes"


def find(name_or_path: str, recipes_dir: Path | None = None, relative_to: Path | None = None) -> Path:
    """A recipe by file stem (``debian-12-amd64``) or path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or "/" in name_or_path:
        base = relative_to or Path.cwd()
        p = p if p.is_absolute() else base / p
        if p.is_file():
            return p
        raise UsageError(f"recipe file {name_or_path!r} not found")
    dirs = [d for d in (relative_to, recipes_dir or default_recipes_dir()) if d]
    for d in dirs:
        cand = d / f"{name_or_path}.toml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.toml")})
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else ("known recipes: " + ", ".join(known) if known else None)
    raise UsageError(f"no recipe named {name_or_path!r} in {', '.join(str(d) for d in dirs)}", hint=hint)


def list_recipes(recipes_dir: Path | None = None) -> list[Path]:
    d = recipes_dir or default_recipes_dir()
    return sorted(d.glob("*.toml"))


def _depth(doc: Any) -> int:
    """How deeply tables and arrays nest (iteratively: the input may be deep)."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, d = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                todo.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def _read_toml(path: Path, problems: list[RecipeProblem]) -> dict | None:
    def bad(expected: str, got: str) -> None:
        problems.append(RecipeProblem(str(path), "", expected, got))

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        bad("a readable TOML file", exc.strerror or str(exc))
        return None
    if len(data) > MAX_FILE_BYTES:
        bad(f"a recipe file of at most {MAX_FILE_BYTES >> 10} KiB", "a larger file")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad("a UTF-8 text file", f"undecodable bytes at offset {exc.start}")
        return None
    if "\x00" in text:
        bad("a text file", f"a NUL byte at offset {text.index(chr(0))} (a binary file?)")
        return None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        bad("valid TOML", f"a syntax error: {exc}")
        return None
    except RecursionError:
        bad(f"tables and arrays nested at most {MAX_DEPTH} deep", "deeper nesting")
        return None
    if _depth(doc) > MAX_DEPTH:
        bad(f"tables and arrays nested at most {MAX_DEPTH} deep", "deeper nesting")
        return None
    return doc


def _merge(base: dict, over: dict, base_origin: dict, over_file: str, prefix: str = "") -> None:
    """Merge ``over`` into ``base`` in place: tables key by key, everything else (lists) replaces."""
    for k, v in over.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and isinstance(base.get(k), dict) and not st.BY_KEY.get(path):
            _merge(base[k], v, base_origin, over_file, path)
        else:
            base[k] = copy.deepcopy(v)
            for o in [o for o in base_origin if o == path or o.startswith(path + ".")]:
                del base_origin[o]
            base_origin[path] = over_file
        if isinstance(v, dict) and path not in base_origin:
            base_origin.setdefault(path, over_file)


def _origins(doc: dict, file: str, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in doc.items():
        path = f"{prefix}.{k}" if prefix else k
        out[path] = file
        if isinstance(v, dict):
            out.update(_origins(v, file, path))
    return out


def read_chain(path: Path, recipes_dir: Path | None, problems: list[RecipeProblem],
               _seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str], tuple[Path, ...]]:
    """The merged document of ``path`` and its ``extends`` ancestors, with each key's origin file,
    and the files in merge order (the root ancestor first)."""
    path = path.resolve()
    if path in _seen:
        cycle = " -> ".join(p.stem for p in (*_seen, path))
        problems.append(RecipeProblem(str(_seen[-1]), "extends", "no cycle", f"a cycle: {cycle}"))
        return {}, {}, ()
    if len(_seen) >= MAX_CHAIN:
        problems.append(RecipeProblem(str(_seen[-1]), "extends", f"at most {MAX_CHAIN} recipes in an "
                                      "extends chain", "a longer chain"))
        return {}, {}, ()
    doc = _read_toml(path, problems)
    if doc is None:
        return {}, {}, (path,)
    parent = doc.pop("extends", None)
    if parent is None:
        return doc, _origins(doc, str(path)), (path,)
    if not isinstance(parent, str):
        problems.append(RecipeProblem(str(path), "extends", "the name or path of another recipe",
                                      _describe(parent)))
        return doc, _origins(doc, str(path)), (path,)
    try:
        parent_path = find(parent, recipes_dir, relative_to=path.parent)
    except UsageError as exc:
        problems.append(RecipeProblem(str(path), "extends", "an existing recipe",
                                      f"{parent!r} ({exc.hint or exc.message})"))
        return doc, _origins(doc, str(path)), (path,)
    base, origin, chain = read_chain(parent_path, recipes_dir, problems, (*_seen, path))
    _merge(base, doc, origin, str(path))
    return base, origin, (*chain, path)


# -- validation --------------------------------------------------------------------------------

def _describe(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)[:80]
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return f"a list of {len(v)} item{'s' if len(v) != 1 else ''}"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _suggest(key: str, prefix: str) -> str | None:
    siblings = st.children(prefix)
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if close:
        return f"{prefix}.{close[0]}".lstrip(".").replace("[]", "")
    # the right name in the wrong table: hostname at the top level -> customize.hostname
    for s in st.SETTINGS:
        if s.key.rsplit(".", 1)[-1] == key and "[]" not in s.key:
            return s.key
    return None


class _Validator:
    def __init__(self, origin: dict[str, str], default_file: str):
        self.origin = origin
        self.default_file = default_file
        self.problems: list[RecipeProblem] = []

    def file_of(self, dpath: str) -> str:
        # list items carry their list's origin
        plain = ".".join(p.split("[", 1)[0] for p in dpath.split("."))
        while plain:
            if plain in self.origin:
                return self.origin[plain]
            plain = plain.rpartition(".")[0]
        return self.default_file

    def problem(self, dpath: str, expected: str, got: str, suggestion: str | None = None):
        self.problems.append(RecipeProblem(self.file_of(dpath), dpath, expected, got, suggestion))

    def table(self, node: dict, prefix: str, dprefix: str) -> dict:
        out: dict[str, Any] = {}
        for k, v in node.items():
            skey = f"{prefix}.{k}" if prefix else k
            dpath = f"{dprefix}.{k}" if dprefix else k
            setting = st.BY_KEY.get(skey)
            if setting is not None:
                try:
                    parsed = setting.type.parse(v)
                except st.Bad as bad:
                    self.problem(dpath, bad.expected, bad.got or _describe(v))
                    continue
                if isinstance(setting.type, st.TableList):
                    parsed = [self.table(item, skey + "[]", f"{dpath}[{i}]") for i, item in enumerate(parsed)]
                out[k] = parsed
            elif st.is_table(skey):
                if not isinstance(v, dict):
                    self.problem(dpath, f"a table [{skey}]", _describe(v))
                    continue
                out[k] = self.table(v, skey, dpath)
            else:
                self.problem(dpath, "a known setting (see `ironforge recipes schema`)",
                             f"unknown key {k!r}", _suggest(k, prefix))
        self.defaults(out, node, prefix, dprefix)
        return out

    def defaults(self, out: dict, given: dict, prefix: str, dprefix: str) -> None:
        for name in st.children(prefix):
            if name in out or name in given:  # given but invalid: already reported
                continue
            skey = f"{prefix}.{name}" if prefix else name
            dpath = f"{dprefix}.{name}" if dprefix else name
            setting = st.BY_KEY.get(skey)
            if setting is not None:
                if setting.required:
                    self.problem(dpath, f"a value ({setting.type.expected})", "nothing (the key is required)")
                elif setting.default is not None:
                    out[name] = copy.deepcopy(setting.default)
                else:
                    out[name] = None
            elif "[]" not in skey:
                # top-level tables always exist with their defaults; sub-tables of list items
                # (sources[].debian_installer) exist only when written
                out[name] = self.table({}, skey, dpath)


def _cross_checks(v: _Validator, values: dict) -> None:
    """Rules that span several keys."""
    os_ = values.get("os") or {}
    fam, rel = os_.get("family"), os_.get("release")
    arch_word = values.get("arch")
    arch = archmod.normalise(arch_word) if isinstance(arch_word, str) and arch_word.lower() in archmod.ALIASES else None
    if fam == "debian" and isinstance(rel, str):
        rel_n = DEBIAN_CODENAMES.get(rel.lower(), rel)
        if rel_n not in DEBIAN_RELEASES:
            v.problem("os.release", "a supported Debian release: " +
                      ", ".join(f'"{n}" ({c})' for n, c in DEBIAN_RELEASES.items()), _describe(rel))
        else:
            os_["release"] = rel_n
            if arch is not None and releases.BY_NUMBER[rel_n].kernel(arch) is None:
                v.problem("arch", f"amd64 (Debian {rel_n} ships no i386 kernel or installer)", _describe(arch_word))
    if fam == "windows" and isinstance(rel, str):
        _windows_checks(v, values, rel, arch, arch_word)
    if values.get("firmware") == "uefi" and arch == archmod.I686:
        v.problem("firmware", '"bios" for 32-bit images (no 32-bit UEFI firmware here)', '"uefi"')
    names: set[str] = set()
    for i, src in enumerate(values.get("sources") or []):
        kinds = [k for k in ("url", "path", "debian_installer") if src.get(k) is not None]
        if len(kinds) != 1:
            v.problem(f"sources[{i}]", "exactly one of url, path, debian_installer",
                      "none" if not kinds else " and ".join(kinds))
        if src.get("url") and not (src.get("sha256") or src.get("sha512")):
            v.problem(f"sources[{i}].sha256", "a sha256 or sha512 for a url source", "nothing")
        if src.get("name") is not None and src.get("name") in names:
            v.problem(f"sources[{i}].name", "a name not used by another source", _describe(src.get("name")))
        names.add(src.get("name"))
    build = values.get("build") or {}
    if build.get("method") == "installer" and fam == "debian":
        if not any(s.get("debian_installer") for s in values.get("sources") or []):
            v.problem("sources", 'a [[sources]] entry with debian_installer for build.method = "installer"',
                      "none")
    users = (values.get("customize") or {}).get("users") or []
    if build.get("method") == "installer" and fam == "debian" and users:
        name = users[0].get("name")
        # d-i's user-setup makes the first user and is stricter than useradd
        if isinstance(name, str) and not name[:1].isalpha():
            v.problem("customize.users[0].name", "a name starting with a letter (the installer "
                      "creates the first user and refuses others)", _describe(name))
    image = ((values.get("source") or {}).get("image") or {})
    if build.get("method") == "convert":
        given = [k for k in ("path", "url") if image.get(k)]
        if len(given) != 1:
            v.problem("source.image", 'exactly one of path, url for build.method = "convert"',
                      " and ".join(given) or "neither")
        if image.get("url") and not image.get("sha256"):
            v.problem("source.image.sha256", "a sha256 for a url source", "nothing")
    for i, f in enumerate((values.get("customize") or {}).get("files") or []):
        if (f.get("content") is None) == (f.get("source") is None):
            v.problem(f"customize.files[{i}]", "exactly one of content, source",
                      "both" if f.get("content") is not None else "neither")


def _windows_checks(v: _Validator, values: dict, rel: str, arch: str | None, arch_word) -> None:
    """What Microsoft ships and what Windows Setup can do, checked before any media is read."""
    from builder.windows.versions import UnknownWindowsVersion, by_release, releases

    try:
        ver = by_release(rel)
    except UnknownWindowsVersion:
        v.problem("os.release", "a Windows release: " + ", ".join(f'"{r}"' for r in releases()),
                  _describe(rel))
        return
    values["os"]["release"] = ver.release
    win = values.get("windows") or {}
    if arch is not None and not ver.supports(arch):
        v.problem("arch", f"amd64 (Microsoft ships no 32-bit {ver.name})", _describe(arch_word))
    if ver.osinfo == "win11" and values.get("firmware") != "uefi":
        v.problem("firmware", '"uefi" (Windows 11 Setup refuses BIOS machines)',
                  _describe(values.get("firmware")))
    if win.get("secure_boot") and values.get("firmware") != "uefi":
        v.problem("windows.secure_boot", 'false, or firmware = "uefi" (Secure Boot is a UEFI feature)', "true")
    if "admin_password" in win and win["admin_password"] is None:  # absent: given but invalid, reported
        v.problem("windows.admin_password", '{ env = "NAME" } or { file = "path" } (Setup needs an '
                  "Administrator password to log on unattended)", "nothing")
    for table in ("media", "virtio_win"):
        t = win.get(table) or {}
        if t.get("path") and t.get("url"):
            v.problem(f"windows.{table}", "one of path, url", "both")
        if t.get("url") and not t.get("sha256"):
            v.problem(f"windows.{table}.sha256", "a sha256 for a url (a download is trusted only by its "
                      "digest)", "nothing")
    seen: set[str] = set()
    for i, u in enumerate(win.get("users") or []):
        name = str(u.get("name", "")).lower()
        if name in seen or name in ("administrator", "guest"):
            v.problem(f"windows.users[{i}].name", "a name not used by another account", _describe(u.get("name")))
        seen.add(name)


def validate(doc: dict, origin: dict[str, str] | None = None, file: str = "<recipe>") \
        -> tuple[dict, list[RecipeProblem]]:
    """Validated values with defaults, and every problem found (empty when valid)."""
    v = _Validator(origin or {}, file)
    if not isinstance(doc, dict):
        v.problem("", "a TOML table", _describe(doc))
        return {}, v.problems
    doc = dict(doc)
    doc.pop("extends", None)
    values = v.table(doc, "", "")
    # cross-field rules look only at values that parsed, so they add to, never mask, the others
    _cross_checks(v, values)
    return values, v.problems


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a recipe's output folder (output/<name>/), or None."""
    if not name or name in (".", ".."):
        return "an empty name, '.' or '..'"
    if "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        return "a path separator"
    if name.startswith("."):
        return "a leading '.' (hidden names are the publisher's temporary folders)"
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return "a control character"
    return None


def load(name_or_path: str | Path, recipes_dir: Path | None = None,
         allow_host_paths: tuple[Path, ...] = ()) -> Recipe:
    """Find, read, merge and validate a recipe; RecipeError lists every problem.

    Host files it names (``settings.host_file_paths()`` and ``{ file = … }`` secrets) must lie
    inside its folder or one of ``allow_host_paths``."""
    path = find(str(name_or_path), recipes_dir)
    problems: list[RecipeProblem] = []
    why = name_problem(path.stem)
    if why:
        problems.append(RecipeProblem(str(path), "", "a recipe file name usable as an output "
                                      "folder name", why))
    doc, origin, chain = read_chain(path, recipes_dir, problems)
    values, vproblems = validate(doc, origin, str(path))
    problems.extend(vproblems)
    if not problems:
        where = _Validator(origin, str(path))
        for dpath, given, resolved in hostpaths.outside(values, path.parent, allow_host_paths,
                                                         st.host_file_paths(), st.secret_paths()):
            shown = f"{given!r}" + (f" (resolves to {resolved})" if str(resolved) != given else "")
            where.problem(dpath, hostpaths.expected(path.parent.resolve()), f"{shown}, outside it")
        problems.extend(where.problems)
    if problems:
        hint = "`ironforge recipes schema` lists every setting"
        if any(hostpaths.FLAG in p.expected for p in problems):
            hint = hostpaths.HINT
        raise RecipeError(problems, hint=hint)
    digest = hashlib.sha256(canonical_json(values).encode()).hexdigest()
    return Recipe(name=path.stem, path=path, values=values, digest=digest, chain=chain,
                  host_paths=tuple(allow_host_paths))

"""A Windows recipe's inputs: the installer media and virtio-win the user names, the version and
edition they are for, and the choices they imply (TPM route).

Recipes cannot ship Microsoft media, so a shipped Windows recipe names none: building it says
exactly which setting is missing and shows an example, before anything runs. Every stage that
needs these inputs goes through here, so the install stage and the answer file agree.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import RecipeError, RecipeProblem
from builder.host import tools
from builder.windows import versions
from builder.windows.media import MediaError, MediaFacts

TREE_MAX_FILES = 50_000


@dataclass(frozen=True)
class InputRef:
    key: str                 # "windows.media" or "windows.virtio_win"
    what: str                # for people
    path: Path | None        # absolute, when the recipe names a path
    url: str | None
    sha256: str | None

    @property
    def is_dir(self) -> bool:
        return self.path is not None and self.path.is_dir()


_WHAT = {"windows.media": "your Windows installer ISO",
         "windows.virtio_win": "the virtio-win ISO or an unpacked virtio-win directory"}


def _example(recipe, key: str) -> str:
    if key == "windows.virtio_win":
        return 'path = "/srv/iso/virtio-win.iso"'
    ver = versions.by_release(recipe.release)
    bits = "x64" if recipe.arch == "x86_64" else "x32"
    return f'path = "/srv/iso/{ver.name.replace(" ", "_")}_English_{bits}.iso"'


def ref(recipe, key: str) -> InputRef:
    t = recipe.get(key, None) or {}
    path = None
    if t.get("path"):
        p = Path(os.path.expanduser(str(t["path"])))
        path = p if p.is_absolute() else recipe.dir / p
    return InputRef(key, _WHAT[key], path, t.get("url"), t.get("sha256"))


def version(recipe) -> versions.WindowsVersion:
    return versions.by_release(recipe.release)


def require(recipe) -> tuple[InputRef, InputRef]:
    """Both inputs, or a RecipeError naming every one that is missing with an example (exit 2)."""
    refs = (ref(recipe, "windows.media"), ref(recipe, "windows.virtio_win"))
    problems = []
    where = str(recipe.path) if recipe.path else recipe.name
    for r in refs:
        if r.path is None and r.url is None:
            why = " (ironforge ships no Microsoft media)" if r.key == "windows.media" else ""
            problems.append(RecipeProblem(where, r.key, f"the path (or url + sha256) of {r.what}, e.g. "
                                          f"[{r.key}] {_example(recipe, r.key)}", "nothing" + why))
        elif r.path is not None and not r.path.exists():
            problems.append(RecipeProblem(where, f"{r.key}.path", f"an existing file ({r.what})",
                                          f"{r.path}, which does not exist"))
        elif r.key == "windows.media" and r.path is not None and not r.path.is_file():
            problems.append(RecipeProblem(where, f"{r.key}.path", "an ISO file", f"{r.path}, a directory"))
    if problems:
        name = recipe.name
        raise RecipeError(problems, hint=(
            f"name them in a recipe of your own, e.g. my-{name}.toml:  extends = \"{name}\"  "
            f"[windows.media] {_example(recipe, 'windows.media')}  sha256 = \"…\"  "
            f"[windows.virtio_win] {_example(recipe, 'windows.virtio_win')}  "
            f"— then: ironforge build my-{name}  (README, \"Windows\")"))
    return refs


def tree_digest(root: Path) -> str:
    """sha256 over a directory's regular files (relative path, size, content digest), in sorted
    order: a virtio-win directory has no single digest to pin, so its contents are the pin."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in filenames:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            entries.append(p)
            if len(entries) > TREE_MAX_FILES:
                raise MediaError(f"{root}: more than {TREE_MAX_FILES} files; not a virtio-win tree")
    h = hashlib.sha256()
    for p in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
        fh = hashlib.sha256()
        with open(p, "rb") as f:
            while b := f.read(1 << 20):
                fh.update(b)
        h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0{fh.hexdigest()}\n".encode())
    return h.hexdigest()


def pin(r: InputRef) -> dict[str, Any]:
    """What the cache key holds for an input: its content digest (declared or computed)."""
    if r.url is not None:
        return {"sha256": r.sha256.lower(), "url": r.url}
    assert r.path is not None
    if r.path.is_dir():
        return {"tree_sha256": tree_digest(r.path)}
    if r.sha256:
        return {"sha256": r.sha256.lower()}
    from builder.cache.store import sha256_file
    return {"sha256": sha256_file(r.path)}


def local_file(store, r: InputRef, *, offline: bool = False, progress: bool = False,
               keyed: str | None = None) -> tuple[Path, str]:
    """The input as a verified file in the download store, and its sha256 (a url is downloaded,
    a path hashed and copied in once). ``keyed``: the digest the cache key was computed from,
    required of a path without a declared sha256 (it must not change between plan and run)."""
    from builder.fetch.http import check_digest, fetch_url
    from builder.fetch.sources import import_local
    if r.url is not None:
        sha = check_digest("sha256", r.sha256)
        return fetch_url(store, r.url, sha256=sha, offline=offline, progress=progress), sha
    f = import_local(store, r.key, r.path, sha256=check_digest("sha256", r.sha256 or keyed))
    return f.path, f.sha256


def at_hand(store, r: InputRef) -> Path | None:
    """The installer ISO if it can be read without downloading (for `plan`)."""
    if r.path is not None and r.path.is_file():
        return r.path
    if r.url is not None and r.sha256:
        from builder.fetch.http import cached
        return cached(store, sha256=r.sha256.lower())
    return None


def tpm_mode(recipe) -> str | None:
    """How Windows 11's TPM check is met: "swtpm" (an emulated TPM 2.0), "bypass" (LabConfig),
    or None for other versions. ``auto`` takes swtpm when it is installed."""
    if version(recipe).osinfo != "win11":
        return None
    want = recipe.get("windows.tpm")
    if want == "auto":
        return "swtpm" if tools.which("swtpm") else "bypass"
    return want


def media_version(edition) -> versions.WindowsVersion | None:
    """The Windows an edition of the media is, from its WIM facts (the same rules as for an
    installed system's hive: build and installation type decide, not the name)."""
    major, minor = edition.major, edition.minor
    if major is None and (edition.build or 0) >= 10240:      # an XML without VERSION/MAJOR
        major, minor = 10, 0
    if major is None:
        return None
    try:
        return versions.identify(major, minor or 0, edition.build, edition.installation_type, edition.name)
    except versions.UnknownWindowsVersion:
        return None


def check_media(recipe, facts: MediaFacts):
    """The edition the recipe selects, checked against the media's facts (exit 2 otherwise):
    its arch, client or server, and the version its build says it is."""
    from builder.windows.media import check_edition_fits
    ed = facts.select(recipe.get("windows.edition", None))
    ver = version(recipe)
    check_edition_fits(ed, arch=recipe.arch, server=ver.server, release=recipe.release)
    found = media_version(ed)
    if found is not None and found.osinfo != ver.osinfo:
        raise MediaError(f"edition {ed.label()} is {found.name} (build {ed.build}), but the recipe's "
                         f"os.release is {recipe.release!r} ({ver.name})",
                         hint=f"use {ver.name} media, or a recipe for {found.name}"
                              + (f' (os.release = "{found.release}")' if found.release else ""))
    return ed


def plan_facts(recipe, store) -> dict[str, Any]:
    """What `ironforge plan` shows for a Windows recipe: the editions on the media (read when
    the ISO is at hand: a local path, or a url already downloaded) and the one selected."""
    from builder.windows.media import inspect_iso
    media, vw = require(recipe)
    out: dict[str, Any] = {"virtio-win": str(vw.path or vw.url)}
    iso = at_hand(store, media)
    if iso is None:
        out["media"] = f"{media.url} (not downloaded yet: editions are read when the build fetches it)"
        return out
    facts = inspect_iso(iso)
    out["media"] = f"{media.path or media.url} ({facts.wim}, read by {facts.read_by})"
    out["editions"] = [e.label() for e in facts.editions]
    out["selected"] = check_media(recipe, facts).label()
    if tpm_mode(recipe):
        out["tpm"] = tpm_mode(recipe)
    return out

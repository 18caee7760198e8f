"""Stage ``bootstrap``: mmdebstrap the recipe's Debian release into ``rootfs.tar``.

Cache pin: the sha256 of the suite's signed InRelease, so a scheduled rebuild re-bootstraps
exactly when the archive changed. SOURCE_DATE_EPOCH: the environment's when set, else the
signed Release's Date (see builder.linux.mmdebstrap).
"""

from __future__ import annotations

import os
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from builder.errors import UsageError
from builder.fetch.debian import inrelease
from builder.linux import mmdebstrap
from builder.linux.packages import Target, package_set
from builder.settings import VIRTIO_MODULES
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.cache.store import file_lock

NAME = "bootstrap"
TARBALL = "rootfs.tar"


def target(recipe) -> Target:
    return Target(release=recipe.release, arch=recipe.arch, firmware=recipe.get("firmware", "bios"))


def _keyring(ctx: StageContext) -> Path | None:
    """build.keyring, resolved from the recipe's folder (recipe.load already refused one outside
    the folders the recipe may read), or None for Debian's archive keyrings."""
    given = ctx.recipe.get("build.keyring", None)
    return Path(os.path.realpath(os.path.join(ctx.recipe.dir, os.path.expanduser(given)))) if given else None


def _release(ctx: StageContext):
    t = target(ctx.recipe)
    ring = _keyring(ctx)
    return inrelease(ctx.recipe.get("build.mirror", "http://deb.debian.org/debian"), t.suite,
                     ctx.store, offline=ctx.offline, progress=ctx.progress,
                     keyrings=[ring] if ring else None)


def pins(ctx: StageContext) -> dict[str, Any]:
    rel = _release(ctx)
    # The signed Date rides along because run() needs it for SOURCE_DATE_EPOCH and gets the
    # pins handed back. It is a function of the InRelease bytes, so it adds nothing to the key;
    # its name sorts after inrelease_sha256, which is what a plan names as the change.
    return {"inrelease_sha256": rel.inrelease_sha256, "suite": rel.suite,
            "release_date": rel.fields.get("Date")}


def _pinned(ctx: StageContext) -> dict[str, Any]:
    """The pins the engine keyed this run on; computed here only when run outside the engine."""
    return ctx.pins if "inrelease_sha256" in ctx.pins else pins(ctx)


def _epoch(date: str | None) -> int | None:
    if not date:
        return None
    try:
        return int(parsedate_to_datetime(date).timestamp())
    except (TypeError, ValueError):
        return None


def spec(ctx: StageContext, source_date_epoch: int | None = None) -> mmdebstrap.Spec:
    r = ctx.recipe
    t = target(r)
    apt_cache = None
    # Opt-in (engine option "apt_cache"): measured here, syncing the .deb cache in and out costs
    # ~40 s on a cold build while deb.debian.org serves the ~250 MB in ~10 s; it pays off only
    # on a slow mirror link.
    if ctx.options.get("apt_cache", False):
        apt_cache = ctx.store.root / "apt-archives" / f"{t.suite}-{t.debian_arch}"
    return mmdebstrap.Spec(
        suite=t.suite, arch=t.debian_arch, variant=r.get("build.variant", "apt"),
        packages=tuple(package_set(t, r.get("build.packages", []))),
        mirror=r.get("build.mirror", "http://deb.debian.org/debian"),
        initramfs_modules=VIRTIO_MODULES, source_date_epoch=source_date_epoch, apt_cache=apt_cache,
        keyring=_keyring(ctx) or mmdebstrap.KEYRING)


def _mmdebstrap_timeout(ctx: StageContext) -> float:
    """Engine option ``mmdebstrap_timeout``, else $IRONFORGE_MMDEBSTRAP_TIMEOUT (seconds), else
    the default: a slow link may need more, a scheduled rebuild must never wait forever."""
    raw = ctx.options.get("mmdebstrap_timeout") or os.environ.get("IRONFORGE_MMDEBSTRAP_TIMEOUT")
    if not raw:
        return mmdebstrap.DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise UsageError(f"mmdebstrap timeout {raw!r} is not a positive number of seconds",
                         hint="set IRONFORGE_MMDEBSTRAP_TIMEOUT to e.g. 7200")
    return value


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    t = target(ctx.recipe)
    package_set(t)  # refuses impossible targets (Debian 13 i386, 32-bit UEFI) before any download
    pinned = _pinned(ctx)
    epoch = _epoch(pinned.get("release_date"))
    s = spec(ctx, epoch)
    out = ctx.workdir / TARBALL
    limit = _mmdebstrap_timeout(ctx)
    if s.apt_cache is not None:
        with file_lock(ctx.store.root / "locks" / f"apt-archives-{t.suite}-{t.debian_arch}.lock"):
            mmdebstrap.run(s, out, ctx.log, timeout=limit)
    else:
        mmdebstrap.run(s, out, ctx.log, timeout=limit)
    return Output(files={"rootfs": TARBALL}, data={
        "suite": t.suite, "arch": t.debian_arch, "variant": s.variant, "packages": list(s.packages),
        "mirror": s.mirror, "inrelease_sha256": pinned["inrelease_sha256"],
        "source_date_epoch": int(os.environ.get("SOURCE_DATE_EPOCH", epoch or 0)) or None,
        "tarball_bytes": out.stat().st_size})


STAGE = StageDef(
    name=NAME, version=1,
    reads=("arch", "firmware", "os.family", "os.release", "build.variant", "build.packages",
           "build.mirror", "build.keyring"),
    run=run, tools=("mmdebstrap",), pins=pins,
    doc="mmdebstrap the Debian release into a root filesystem tarball")

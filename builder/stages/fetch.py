"""fetch: every [[sources]] file of the recipe, verified, hard-linked into the artifact.

Artifact files: a url/path source N -> "N"; a debian_installer netboot source N -> "N.kernel" and
"N.initrd"; a mini.iso one -> "N.iso". data: per file {url, sha256, size, verified_by}.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from builder.cache.store import sha256_file
from builder.fetch.debian import inrelease, suite_for
from builder.fetch.http import FetchOptions, check_digest
from builder.fetch.sources import (fetch_sources, installer_params, local_path,
                                   source_kind)
from builder.stage import Artifact, Output, StageContext, StageDef


def _options(ctx: StageContext) -> tuple[FetchOptions | None, Any]:
    # tests point the stage at a loopback archive signed by a throw-away key
    return ctx.options.get("fetch_options"), ctx.options.get("fetch_keyrings")


def run(ctx: StageContext, inputs: dict[str, Artifact]) -> Output:
    options, keyrings = _options(ctx)
    files, data = {}, {}
    for f in fetch_sources(ctx.store, ctx.recipe, offline=ctx.offline, progress=ctx.progress,
                           options=options, keyrings=keyrings, pins=ctx.pins):
        dst = ctx.workdir / f.name
        try:
            os.link(f.path, dst)     # same filesystem as the store: no copy, no extra space
        except OSError:
            shutil.copyfile(f.path, dst)
        files[f.name] = f.name
        data[f.name] = f.as_data()
        ctx.log.info("fetch: %s (%d bytes, sha256 %s…, %s)", f.name, f.size, f.sha256[:12],
                     f.verified_by)
    return Output(files=files, data=data)


def pins(ctx: StageContext) -> dict[str, Any]:
    """What upstream state this stage's output depends on, known before running it.

    url: the declared digest; path: the file's sha256 now; debian_installer: the sha256 of the
    suite's InRelease (fetched fresh unless offline), so a rebuild refetches exactly when the
    archive changed.
    """
    options, keyrings = _options(ctx)
    out: dict[str, Any] = {}
    for src in ctx.recipe.get("sources", None) or []:
        name, kind = src["name"], source_kind(src)
        if kind == "url":
            sha256 = check_digest("sha256", src.get("sha256"))
            out[name] = {"sha256": sha256} if sha256 else \
                {"sha512": check_digest("sha512", src.get("sha512"))}
        elif kind == "path":
            p = local_path(ctx.recipe, src)
            out[name] = {"sha256": sha256_file(p) if p.is_file() else "missing:" + str(p)}
        else:
            prm = installer_params(ctx.recipe, src)
            rel = inrelease(prm["mirror"], suite_for(prm["release"]), ctx.store, offline=ctx.offline,
                            keyrings=keyrings, options=options)
            out[name] = {"inrelease_sha256": rel.inrelease_sha256, "mirror": prm["mirror"],
                         "suite": rel.suite}
    return out


STAGE = StageDef(name="fetch", version=1, reads=("sources", "arch", "os.family", "build.mirror"), run=run,
                 pins=pins, tools=("gpgv",), doc=__doc__.splitlines()[0])

"""answer: autounattend.xml and the answer CD for this recipe's Windows, version and arch.

Artifact files: "answer_iso" (the CD: autounattend.xml, drivers under $WinPEDriver$\\ and
virtio\\, ironforge\\complete.cmd) and "autounattend" (the XML, for people). Both hold the
encoded passwords Setup needs, so both are written 0600. data: image, tpm route, drivers
(source path -> target), the CD listing with digests (the answer file's digest is left out:
it would be a hash of the passwords).
"""

from __future__ import annotations

import os
from typing import Any

from builder import arch as archmod
from builder.secrets import resolve
from builder.stage import Artifact, Output, StageContext, StageDef
from builder.windows import answer_iso, inputs, unattend, virtio_win
from builder.windows.stages.fetch import virtio_win_source


def _secret(ctx: StageContext, key: str, ref):
    return resolve(ref, ctx.recipe.dir, key=key) if ref is not None else None


def answer_for(ctx: StageContext, media: Artifact) -> unattend.Answer:
    r = ctx.recipe
    ver = inputs.version(r)
    edition = media.data["edition"]
    accounts = tuple(unattend.Account(u["name"], _secret(ctx, f"windows.users[{i}].password", u["password"]),
                                      bool(u.get("admin")))
                     for i, u in enumerate(r.get("windows.users") or []))
    return unattend.Answer(
        arch=archmod.family_word("windows", r.arch), firmware=r.get("firmware"), osinfo=ver.osinfo,
        server=ver.server, image_index=int(edition["index"]), image_name=edition["name"],
        computer_name=unattend.computer_name(r.name),
        admin_password=_secret(ctx, "windows.admin_password", r.get("windows.admin_password")),
        locale=r.get("windows.locale"), timezone=r.get("windows.timezone"),
        product_key=_secret(ctx, "windows.product_key", r.get("windows.product_key", None)),
        accounts=accounts, tpm_bypass=inputs.tpm_mode(r) == "bypass",
        firstlogon_commands=tuple(r.get("windows.firstlogon_commands") or ()))


def run(ctx: StageContext, deps: dict[str, Artifact]) -> Output:
    media = deps["fetch"]
    answer = answer_for(ctx, media)
    xml = unattend.render(answer)
    ver = inputs.version(ctx.recipe)
    drivers = virtio_win.select(virtio_win_source(media), ver, ctx.recipe.arch)
    cd = answer_iso.layout(xml, [(d.target, d.read()) for d in drivers])
    iso = ctx.workdir / "answer.iso"
    listing = answer_iso.write(iso, cd)
    xml_path = ctx.workdir / "autounattend.xml"
    fd = os.open(xml_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(xml)
    os.chmod(iso, 0o600)
    listing["autounattend.xml"] = "(secret: holds the encoded passwords)"
    ctx.log.info("answer: %s, image %d (%s), %d driver files for %s/%s, tpm %s", ver.name,
                 answer.image_index, answer.image_name, len(drivers), ver.virtio_os, answer.arch,
                 inputs.tpm_mode(ctx.recipe) or "n/a")
    data: dict[str, Any] = {
        "image": {"index": answer.image_index, "name": answer.image_name},
        "arch": answer.arch, "firmware": answer.firmware, "osinfo": ver.osinfo,
        "tpm": inputs.tpm_mode(ctx.recipe),
        "markers": [unattend.MARKER + p for p in unattend.PASSES],
        "drivers": [{"driver": d.driver, "source": d.source_path, "target": d.target} for d in drivers],
        "cd": listing,
    }
    return Output(files={"answer_iso": "answer.iso", "autounattend": "autounattend.xml"}, data=data)


STAGE = StageDef(
    name="answer", version=1,
    reads=("name", "arch", "firmware", "os.release", "windows.edition", "windows.locale",
           "windows.timezone", "windows.users", "windows.admin_password", "windows.product_key",
           "windows.tpm", "windows.firstlogon_commands"),
    run=run, inputs=("fetch",), tools=("swtpm",), doc=__doc__.splitlines()[0])

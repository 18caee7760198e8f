"""Helpers for the rebuild tests: a loopback Debian suite signed with a throw-away key whose
InRelease a test can bump (new Date, changed packages), and a small stage pipeline over it whose
first stage pins the suite's real, gpgv-verified InRelease exactly as the bootstrap stage does.

The pipeline's stages are stand-ins for bootstrap/drivers/export (no guest is built): the
"bootstrap" stage reads the signed Packages index through the product's fetch code, "drivers"
reports that package list as the real one does, "export" writes a small real qcow2."""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fetch_support import LoopbackServer, Route, Signer

from builder.cache.store import Store
from builder.engine import Engine
from builder.fetch.debian import fetch_listed, inrelease
from builder.host.accel import Accel
from builder.recipe import Recipe
from builder.stage import Output, StageDef

SUITE = "bookworm"


def stanza(name: str, version: str, arch: str = "amd64", **extra: str) -> str:
    lines = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}"]
    lines += [f"{k.replace('_', '-').title()}: {v}" for k, v in extra.items()]
    lines.append(f"Filename: pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb")
    return "\n".join(lines) + "\n"


def release_text(date: float, files: dict[str, bytes], arch: str = "amd64") -> str:
    sums = "".join(f" {hashlib.sha256(d).hexdigest()} {len(d):>8} {p}\n" for p, d in sorted(files.items()))
    return (f"Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: 12.99\nCodename: {SUITE}\n"
            f"Date: {email.utils.formatdate(date, usegmt=True).replace('GMT', 'UTC')}\n"
            f"Architectures: {arch}\nComponents: main\nDescription: ironforge test suite\n"
            f"SHA256:\n{sums}")


@dataclass
class Suite:
    """dists/bookworm/{InRelease,Release,main/binary-amd64/Packages} served from a LoopbackServer."""

    server: LoopbackServer
    signer: Signer
    prefix: str
    packages: dict[str, str] = field(default_factory=dict)     # name -> version
    date: float = 1783764997.0                                   # Sat, 11 Jul 2026 10:16:37 UTC
    bumps: int = 0

    @property
    def mirror(self) -> str:
        return self.server.base + self.prefix

    def publish(self) -> None:
        index = "".join(stanza(n, v) + "\n" for n, v in sorted(self.packages.items())).encode()
        rel = release_text(self.date, {"main/binary-amd64/Packages": index})
        d = f"{self.prefix}/dists/{SUITE}"
        self.server.add(f"{d}/main/binary-amd64/Packages", Route(data=index, etag=f'"{self.bumps}"'))
        self.server.add(f"{d}/Release", Route(data=rel.encode(), etag=f'"{self.bumps}"'))
        self.server.add(f"{d}/InRelease", Route(data=self.signer.clearsign(rel), etag=f'"{self.bumps}"'))

    def bump(self, **changes: str | None) -> None:
        """A new archive state: Date one day later, and packages changed (None removes one)."""
        for n, v in changes.items():
            n = n.replace("_", "-")
            if v is None:
                self.packages.pop(n, None)
            else:
                self.packages[n] = v
        self.date += 86400
        self.bumps += 1
        self.publish()


def make_suite(server: LoopbackServer, signer: Signer, **packages: str) -> Suite:
    s = Suite(server, signer, server.unique("debian").rsplit("/", 1)[0],
              {n.replace("_", "-"): v for n, v in packages.items()})
    s.publish()
    return s


# -- the stand-in pipeline ---------------------------------------------------------------------

def _log(ctx, name: str) -> None:
    with open(Path(ctx.options["counter_dir"]) / "runs.log", "a") as f:
        f.write(name + "\n")


def _release(ctx):
    return inrelease(ctx.recipe.get("build.mirror"), SUITE, ctx.store, offline=ctx.offline,
                     keyrings=[ctx.options["keyring"]])


def _pins(ctx) -> dict:
    rel = _release(ctx)
    return {"inrelease_sha256": rel.inrelease_sha256, "suite": rel.suite,
            "release_date": rel.fields.get("Date")}


def _bootstrap(ctx, inputs):
    _log(ctx, "bootstrap")
    rel = _release(ctx)
    assert rel.inrelease_sha256 == ctx.pins["inrelease_sha256"]
    text = fetch_listed(rel, "main/binary-amd64/Packages", ctx.store).read_text()
    pkgs = []
    for block in text.split("\n\n"):
        f = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if f:
            pkgs.append({"name": f["Package"], "version": f["Version"], "arch": f["Architecture"]})
    (ctx.workdir / "rootfs.json").write_text(json.dumps(pkgs))
    return Output(files={"rootfs": "rootfs.json"})


def _wait_if_asked(ctx, stage: str) -> None:
    """Options ``hold_<stage>=MARKER``: announce the stage started (MARKER holds our pid), then
    wait until MARKER.go exists (or the test kills us)."""
    marker = ctx.options.get(f"hold_{stage}")
    if marker:
        Path(marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + 600
        while not Path(marker + ".go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _drivers(ctx, inputs):
    _log(ctx, "drivers")
    _wait_if_asked(ctx, "drivers")
    pkgs = json.loads(inputs["previous"].path("rootfs").read_text())
    (ctx.workdir / "listing.txt").write_text("virtio_blk\n")
    return Output(files={"listing": "listing.txt"}, data={"packages": pkgs})


def _export(ctx, inputs):
    _log(ctx, "export")
    _wait_if_asked(ctx, "export")
    if ctx.options.get("fail_export"):
        from builder.errors import BuildError
        raise BuildError("export failed on purpose (test)")
    img = ctx.workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "1M"], check=True)
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    return Output(files={"qcow2": "disk.qcow2", "image": "disk.qcow2"},
                  data={"published_formats": ["qcow2"], "qcow2": {"sha256": digest}})


BOOTSTRAP = StageDef("bootstrap", 1, ("build.mirror",), _bootstrap, pins=_pins)
DRIVERS = StageDef("drivers", 1, ("drivers.label",), _drivers)
EXPORT = StageDef("export", 1, (), _export)
STAGES = [BOOTSTRAP, DRIVERS, EXPORT]


def recipe(mirror: str, name: str = "fleet", **drivers) -> Recipe:
    return Recipe(name=name, path=None, values={
        "arch": "amd64", "os": {"family": "debian", "release": "12"}, "firmware": "bios",
        "build": {"mirror": mirror}, "drivers": {"label": drivers.get("label", "a")}})


def engine(cache: Path, counter: Path, keyring: Path, **options) -> Engine:
    counter.mkdir(parents=True, exist_ok=True)
    return Engine(store=Store(cache), accel=Accel("tcg", "test"),
                  options={"counter_dir": str(counter), "keyring": str(keyring), **options})


def runs(counter: Path) -> list[str]:
    p = counter / "runs.log"
    return p.read_text().split() if p.exists() else []

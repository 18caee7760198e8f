"""The Windows fetch (media) and answer stages through the real engine and cache, on STAND-IN media (a wimlib
WIM in a pycdlib UDF ISO) and the STAND-IN virtio-win tree: no Microsoft media exist here."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest

from builder import pipeline
from builder import recipe as recipes
from builder.cache.store import Store
from builder.engine import Engine
from builder.host.accel import Accel
from builder.windows import virtio_win, versions
from builder.windows.media import MediaError
from windows import standin_media as sm

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "Stand-in-Adm1n!"
USER_PW = "us3r-Stand-in"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("standin-win-media")
    return {"win10x86": sm.make_media(tmp / "w10x86.iso", sm.WIN10_X86, tmp),
            "win10": sm.make_media(tmp / "w10.iso", sm.WIN10, tmp),
            "win11": sm.make_media(tmp / "w11.iso", sm.WIN11, tmp),
            "server2022": sm.make_media(tmp / "s2022.iso", sm.SERVER2022, tmp),
            "server2019": sm.make_media(tmp / "s2019.iso", [(
                "Windows Server 2019 Standard Evaluation (Desktop Experience)", "ServerStandardEval",
                "amd64", 17763, "Server")], tmp)}


def _recipe(tmp: Path, base: str, iso: Path, vw: Path, extra: str = "") -> recipes.Recipe:
    p = tmp / f"my-{base}.toml"
    p.write_text(f'extends = "{base}"\n[windows.media]\npath = "{iso}"\n'
                 f'[windows.virtio_win]\npath = "{vw}"\n{extra}')
    return recipes.load(str(p), REPO / "recipes")


def _engine(tmp: Path) -> Engine:
    return Engine(store=Store(tmp / "cache"), accel=Accel("tcg", "test"))


def _stages(r):
    return [pipeline.load_stage(n, r) for n in ("fetch", "answer")]


def _cd_paths(iso: Path) -> set[str]:
    import pycdlib
    p = pycdlib.PyCdlib()
    p.open(str(iso))
    try:
        return {root.lstrip("/") + "/" + f if root != "/" else f
                for root, _dirs, files in p.walk(joliet_path="/") for f in files}
    finally:
        p.close()


def _read_cd(iso: Path, path: str) -> bytes:
    import io

    import pycdlib
    p = pycdlib.PyCdlib()
    p.open(str(iso))
    try:
        buf = io.BytesIO()
        p.get_file_from_iso_fp(buf, joliet_path="/" + path)
        return buf.getvalue()
    finally:
        p.close()


CASES = [  # shipped recipe, media, version, arch word, firmware, tpm route, virtio-win shape
    ("windows-10-x86", "win10x86", "win10", "x86", "bios", None, "iso"),
    ("windows-11-amd64", "win11", "win11", "amd64", "uefi", "bypass", "directory"),
    ("windows-server-2022-amd64", "server2022", "win2k22", "amd64", "uefi", None, "iso"),
]


@pytest.mark.parametrize("base,medium,osinfo,arch,firmware,tpm,vw_kind", CASES)
def test_answer_cd_for_version_arch_and_firmware(tmp_path, monkeypatch, media, standin_vw, caplog,
                                                 base, medium, osinfo, arch, firmware, tpm, vw_kind):
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("IRONFORGE_TEST_USER_PW", USER_PW)
    vw = standin_vw[0] if vw_kind == "directory" else standin_vw[1]
    extra = ('tpm = "bypass"\n' if tpm else "")
    extra = "[windows]\n" + extra + '[[windows.users]]\nname = "alice"\npassword = { env = "IRONFORGE_TEST_USER_PW" }\n'
    r = _recipe(tmp_path, base, media[medium], vw, extra)
    eng = _engine(tmp_path)
    caplog.set_level(logging.DEBUG)
    res = eng.run(r, _stages(r))
    m, a = res.artifacts["fetch"], res.artifacts["answer"]
    assert m.data["edition"]["name"] == r.get("windows.edition")
    assert m.data["virtio_win"]["kind"] == vw_kind
    iso = a.path("answer_iso")
    assert (iso.stat().st_mode & 0o777) == 0o600 and (a.path("autounattend").stat().st_mode & 0o777) == 0o600

    from defusedxml import ElementTree as ET
    xml = _read_cd(iso, "autounattend.xml")
    assert xml == a.path("autounattend").read_bytes()
    root = ET.fromstring(xml)
    ns = "{urn:schemas-microsoft-com:unattend}"
    assert {c.get("processorArchitecture") for c in root.iter(f"{ns}component")} == {arch}
    index = [e for e in root.iter(f"{ns}MetaData")][0].find(f"{ns}Value").text
    assert index == str(m.data["edition"]["index"])
    types = [t.text for t in root.iter(f"{ns}Type")]
    assert types == (["EFI", "MSR", "Primary"] if firmware == "uefi" else ["Primary", "Primary"])
    assert (b"LabConfig" in xml) == (tpm == "bypass") and a.data["tpm"] == tpm

    # the drivers are exactly the selection for this version and arch, in both folders
    ver = versions.by_osinfo(osinfo)
    chosen = virtio_win.select(vw, ver, r.arch)
    want = {d.target for d in chosen}
    paths = _cd_paths(iso)
    assert {p.split("/", 1)[1] for p in paths if p.startswith("$WinPEDriver$/")} == want
    assert {p.split("/", 1)[1] for p in paths if p.startswith("virtio/")} == want
    assert {"viostor.sys", "vioscsi.sys", "netkvm.inf"} <= want
    other = "amd64" if arch == "x86" else "x86"
    for d in a.data["drivers"]:
        elems = [e.lower() for e in d["source"].split("/")]
        assert "arm64" not in elems and other not in elems and ver.virtio_os in elems
    assert "ironforge/complete.cmd" in paths

    # secrets: in the answer file (encoded, as Setup needs), nowhere else
    encoded = base64.b64encode((PASSWORD + "AdministratorPassword").encode("utf-16-le"))
    assert encoded in xml and PASSWORD.encode() not in xml
    for art in (m, a):
        meta = (art.dir / "meta.json").read_text()
        for secret in (PASSWORD, USER_PW, encoded.decode()):
            assert secret not in meta
    assert PASSWORD not in caplog.text and USER_PW not in caplog.text
    from builder.publish import build_manifest
    manifest = json.dumps(build_manifest(res, eng.accel, None))
    got = json.loads(manifest)["inputs"]
    assert got["fetch"]["files"]["edition"]["name"] == r.get("windows.edition")
    assert got["fetch"]["files"]["installer"]["facts"]["editions"]
    assert got["answer"]["facts"]["drivers"] and got["answer"]["facts"]["tpm"] == tpm
    assert PASSWORD not in manifest and USER_PW not in manifest and encoded.decode() not in manifest
    for step in eng.plan(r, _stages(r)):
        text = json.dumps(step.material)
        assert PASSWORD not in text and USER_PW not in text and step.hit


def test_same_recipe_same_answer_bytes_and_a_new_password_rekeys_only_answer(tmp_path, monkeypatch, media,
                                                                             standin_vw):
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", PASSWORD)
    r = _recipe(tmp_path, "windows-10-amd64", media["win10"], standin_vw[1])
    eng = _engine(tmp_path)
    first = eng.run(r, _stages(r))
    iso1 = first.artifacts["answer"].path("answer_iso").read_bytes()
    again = eng.run(r, _stages(r), force=True)
    assert again.artifacts["answer"].path("answer_iso").read_bytes() == iso1
    assert [s.key for s in again.steps] == [s.key for s in first.steps]
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", PASSWORD + "2")
    plan = eng.plan(r, _stages(r))
    assert plan[0].hit and not plan[1].hit
    assert plan[1].reason == "windows.admin_password changed"


def test_media_that_do_not_match_the_recipe_are_refused(tmp_path, monkeypatch, media, standin_vw):
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", PASSWORD)
    eng = _engine(tmp_path)
    wrong_arch = _recipe(tmp_path, "windows-10-x86", media["win10"], standin_vw[1])
    with pytest.raises(MediaError, match="is amd64, but the recipe's arch is x86"):
        eng.run(wrong_arch, _stages(wrong_arch)[:1])
    wrong_version = _recipe(tmp_path, "windows-11-amd64", media["win10"], standin_vw[1],
                            '[windows]\nedition = "Windows 10 Pro"\n')
    with pytest.raises(MediaError, match=r"is Windows 10 \(build 19045\), but the recipe.s os.release is .11."):
        eng.run(wrong_version, _stages(wrong_version)[:1])
    server = _recipe(tmp_path, "windows-server-2022-amd64", media["win10"], standin_vw[1],
                     '[windows]\nedition = 2\n')
    with pytest.raises(MediaError, match="client edition"):
        eng.run(server, _stages(server)[:1])
    older = _recipe(tmp_path, "windows-server-2022-amd64", media["server2019"], standin_vw[1],
                    '[windows]\nedition = 1\n')
    with pytest.raises(MediaError, match=r"is Windows Server 2019 \(build 17763\).*'server-2022'") as exc:
        eng.run(older, _stages(older)[:1])
    assert 'os.release = "server-2019"' in exc.value.hint
    assert not any((tmp_path / "cache" / "stages").glob("*/meta.json"))


REAL_ISO = os.environ.get("IRONFORGE_TEST_WINDOWS_ISO")
REAL_VW = os.environ.get("IRONFORGE_TEST_VIRTIO_WIN")


def _shipped_for(edition) -> str:
    """The shipped recipe an edition of real media belongs to (by build, as Windows tells)."""
    if edition.server:
        years = {"win2k25": "2025", "win2k22": "2022", "win2k19": "2019"}
        for build, osinfo in versions.SERVER_BUILDS:
            if (edition.build or 0) >= build and osinfo in years:
                return f"windows-server-{years[osinfo]}-amd64"
        pytest.skip(f"no shipped recipe for {edition.label()}")
    if (edition.build or 0) >= versions.WIN11_MIN_BUILD:
        return "windows-11-amd64"
    return "windows-10-x86" if edition.arch == "i686" else "windows-10-amd64"


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_ISO and REAL_VW),
                    reason="IRONFORGE_TEST_WINDOWS_ISO and IRONFORGE_TEST_VIRTIO_WIN do not name real media")
def test_real_media_answer_cd(tmp_path, monkeypatch):
    """With real media: the fetch and answer stages for the first edition of each arch they hold."""
    from builder.windows.media import inspect_iso
    monkeypatch.setenv("IRONFORGE_WINDOWS_ADMIN_PASSWORD", PASSWORD)
    facts = inspect_iso(Path(REAL_ISO))
    firsts = {}
    for e in facts.editions:
        if e.arch in ("x86_64", "i686"):
            firsts.setdefault(e.arch, e)
    assert firsts, "the media hold no x86 or amd64 edition"
    for arch, e in firsts.items():
        r = _recipe(tmp_path, _shipped_for(e), Path(REAL_ISO).resolve(), Path(REAL_VW).resolve(),
                    f"[windows]\nedition = {e.index}\n")
        res = _engine(tmp_path).run(r, _stages(r))
        paths = _cd_paths(res.artifacts["answer"].path("answer_iso"))
        assert "$WinPEDriver$/viostor.sys" in paths and "virtio/viostor.inf" in paths

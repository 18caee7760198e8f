"""The customize stage end to end: every feature in one real libguestfs launch over a real
Debian 12 filesystem, then every change read back by an independent read-only launch."""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap
from pathlib import Path

import pytest

from builder import recipe as recipemod
from builder import secrets
from builder.cache.store import Store
from builder.errors import UsageError
from builder.host import accel as accelmod
from builder.host import guestfs_session
from builder.host.guestfs_session import Drive
from builder.linux import customize as cz
from builder.stage import Artifact, StageContext
from builder.stages import customize as stage

import customize_support

from customize_support import ALICE_KEYS, ALICE_PW, ROOT_PW

FULL_RECIPE = customize_support.RECIPE_HEAD + customize_support.IDENTITY + """
packages = ["hello"]
commands = [
  "hostname_now=$(cat /etc/hostname); echo \\"$hostname_now $(id -un)\\" > /var/tmp/command-ran",
  "cp /opt/app/config.ini /var/tmp/config-copy && test -x /usr/sbin/policy-rc.d",
]
firstboot = ["echo first boot > /var/tmp/firstboot-ran", "systemctl is-system-running || true"]
""" + customize_support.ACCOUNTS_AND_FILES


def counting(factory):
    """The real session factory, counting how often an appliance is opened (not a mock)."""
    calls = []

    def open_session(*args, **kwargs):
        calls.append(kwargs.get("network"))
        return factory(*args, **kwargs)
    open_session.calls = calls
    return open_session


def make_ctx(tmp_path: Path, recipe, env: dict) -> StageContext:
    work = tmp_path / "work"
    work.mkdir(parents=True)
    return StageContext(recipe=recipe, accel=accelmod.choose(), store=Store(tmp_path / "store"),
                        workdir=work, log=logging.getLogger("ironforge.stage.customize"),
                        options={"env": env})


def previous_artifact(image: Path) -> Artifact:
    return Artifact(stage="disk", key="test-base", dir=image.parent, files={"image": image.name}, data={})


@pytest.fixture(scope="module")
def base_image():
    return customize_support.base_image()


@pytest.fixture()
def full_recipe(tmp_path):
    return recipemod.load(customize_support.recipe_dir(tmp_path, FULL_RECIPE))


def test_stage_definition():
    assert stage.STAGE.name == "customize" and stage.STAGE.reads == ("customize",)
    assert "libguestfs" in stage.STAGE.tools


def test_source_file_contents_change_the_key_without_a_published_digest(full_recipe, tmp_path):
    import hashlib
    from builder.engine import Engine
    engine = Engine(store=Store(tmp_path / "store"), accel=accelmod.Accel("tcg", "test"), offline=True)
    before = engine.material(full_recipe, stage.STAGE, None)
    (full_recipe.dir / "files" / "motd").write_text("changed\n")
    after = engine.material(full_recipe, stage.STAGE, None)
    assert before["reads"] != after["reads"] and before["pins"] == after["pins"] == {}
    text = json.dumps(after)
    assert hashlib.sha256(b"changed\n").hexdigest() not in text and "changed" not in text


def test_missing_env_secret_fails_before_any_launch(full_recipe, tmp_path, base_image):
    opener = counting(guestfs_session.session)
    ctx = make_ctx(tmp_path, full_recipe, {})          # IRONFORGE_TEST_ROOT_PW not set
    with pytest.raises(UsageError) as exc:
        stage.run(ctx, {"previous": previous_artifact(base_image)}, open_session=opener)
    assert exc.value.exit_code == 2
    assert "IRONFORGE_TEST_ROOT_PW" in exc.value.message and "customize.root_password" in exc.value.message
    assert opener.calls == [] and not (ctx.workdir / "image.qcow2").exists()


@pytest.mark.network
def test_every_feature_in_one_launch_read_back_independently(full_recipe, tmp_path, base_image, caplog):
    base_sum = customize_support.sha256_file(base_image)
    ctx = make_ctx(tmp_path, full_recipe, {"IRONFORGE_TEST_ROOT_PW": ROOT_PW})
    opener = counting(guestfs_session.session)
    caplog.set_level(logging.DEBUG, logger="ironforge")

    out = stage.run(ctx, {"previous": previous_artifact(base_image)}, open_session=opener)

    # One appliance for everything, with the network on because packages were asked for.
    assert opener.calls == [True]
    assert out.files == {"image": "image.qcow2"}
    image = ctx.workdir / "image.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == str(base_image.resolve())
    assert out.data["hostname"] == "forged" and out.data["users"] == ["alice", "dave"]
    assert out.data["root"] == "password" and out.data["packages"] == ["hello"]
    # the image report was read after the edits, in the same launch: it lists the new package
    rep = out.data["image_report"]
    assert "hello" in {p["name"] for p in rep["facts"]["packages"]}
    # the test base image has no kernel: the report says so, and the drivers stage, finding it
    # unusable, would launch and fail with "no installed kernel" (tests/stages/test_drivers.py
    # covers real kernels)
    assert rep["kernels"] == [] and rep["modules"] == {}

    # Secrets appear nowhere: not in DEBUG logs, not in the artifact data, not in the image bytes.
    logs = caplog.text + json.dumps(out.data)
    assert "customize: installing packages" in caplog.text          # the logs did get captured
    assert ROOT_PW not in logs and ALICE_PW not in logs
    layer = image.read_bytes()
    assert ROOT_PW.encode() not in layer and ALICE_PW.encode() not in layer

    with guestfs_session.session([Drive(image, readonly=True)], ctx.accel, what="read back") as g:
        g.mount_ro(g.inspect_os()[0], "/")
        cat = g.cat

        assert cat("/etc/hostname") == "forged\n"
        assert "127.0.1.1\tforged" in cat("/etc/hosts").splitlines()
        assert g.readlink("/etc/localtime") == "/usr/share/zoneinfo/Europe/Paris"
        assert cat("/etc/timezone") == "Europe/Paris\n"
        assert cat("/etc/default/locale") == "LANG=en_US.UTF-8\n"
        assert "en_US.UTF-8 UTF-8" in cat("/etc/locale.gen").splitlines()
        assert "en_US.utf8" in g.command(["localedef", "--list-archive"]).split()

        shadow = {ln.split(":")[0]: ln.split(":") for ln in cat("/etc/shadow").splitlines()}
        passwd = {ln.split(":")[0]: ln.split(":") for ln in cat("/etc/passwd").splitlines()}
        group = {ln.split(":")[0]: ln.split(":") for ln in cat("/etc/group").splitlines()}
        root_hash = shadow["root"][1]
        assert root_hash.startswith("$6$") and secrets.verify_password(ROOT_PW, root_hash)
        alice_hash = shadow["alice"][1]
        assert alice_hash.startswith("$6$") and secrets.verify_password(ALICE_PW, alice_hash)
        assert shadow["dave"][1].startswith("!")                       # no password: locked

        _, _, uid, gid, _, home, shell = passwd["alice"]
        uid, gid = int(uid), int(gid)
        assert uid >= 1000 and home == "/home/alice" and shell == "/bin/bash"
        assert group["alice"][2] == str(gid)                           # its own user group
        for grp in ("adm", "users"):
            assert "alice" in group[grp][3].split(",")
        assert passwd["dave"][6] == "/bin/sh" and g.is_dir("/home/dave")

        def meta(path):
            st = g.statns(path)
            return st["st_mode"] & 0o7777, st["st_uid"], st["st_gid"]

        assert meta("/home/alice")[1:] == (uid, gid)
        assert meta("/home/alice/.ssh") == (0o700, uid, gid)
        assert meta("/home/alice/.ssh/authorized_keys") == (0o600, uid, gid)
        assert cat("/home/alice/.ssh/authorized_keys").splitlines() == ALICE_KEYS
        assert meta("/etc/sudoers.d/alice") == (0o440, 0, 0)
        assert cat("/etc/sudoers.d/alice").splitlines()[-1] == "alice ALL=(ALL:ALL) NOPASSWD: ALL"
        assert not g.exists("/etc/sudoers.d/dave")
        assert meta("/etc/shadow")[0] == 0o640

        status = cat("/var/lib/dpkg/status")
        assert "Package: hello\nStatus: install ok installed\n" in status
        assert g.is_file("/usr/bin/hello")
        assert [f for f in g.ls("/var/lib/apt/lists") if f not in ("lock", "partial", "auxfiles")] == []
        assert not [f for f in g.ls("/var/cache/apt/archives") if f.endswith(".deb")]
        assert not g.exists("/usr/sbin/policy-rc.d")

        assert cat("/etc/motd") == "Welcome to forged\n" and meta("/etc/motd") == (0o600, uid, gid)
        assert cat("/opt/app/config.ini") == "[app]\nname = forged\n"
        assert meta("/opt/app/config.ini") == (0o640, 0, int(group["adm"][2]))

        # Commands ran inside the image, as root, after hostname and files were in place.
        assert cat("/var/tmp/command-ran") == "forged root\n"
        assert cat("/var/tmp/config-copy") == "[app]\nname = forged\n"

        unit = "/etc/systemd/system/" + cz.FIRSTBOOT_UNIT
        assert cat(unit) == cz.FIRSTBOOT_UNIT_TEXT
        assert g.readlink("/etc/systemd/system/multi-user.target.wants/" + cz.FIRSTBOOT_UNIT) == unit
        script = cat(cz.FIRSTBOOT_SCRIPT)
        assert meta(cz.FIRSTBOOT_SCRIPT)[0] == 0o755
        assert "/bin/sh -c 'echo first boot > /var/tmp/firstboot-ran'" in script
        assert not g.exists("/var/tmp/firstboot-ran") and not g.exists(cz.FIRSTBOOT_DONE)

    assert customize_support.sha256_file(base_image) == base_sum       # the base is untouched


@pytest.mark.network
def test_engine_reruns_customize_when_the_password_changes_without_revealing_it(tmp_path, base_image,
                                                                              monkeypatch):
    """Through the real engine: same secret -> cache hit (no launch); changed secret -> only
    customize re-runs; the cache (keys, metadata, image layers) never holds the password."""
    from builder.engine import Engine
    from builder.stage import Output, StageDef

    def disk(ctx, inputs):   # stands in for the disk stage: a layer over the test rootfs
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(base_image.resolve()), str(ctx.workdir / "image.qcow2")], check=True)
        return Output(files={"image": "image.qcow2"})

    opener = counting(guestfs_session.session)

    def customize_run(ctx, inputs):
        return stage.run(ctx, inputs, open_session=opener)

    stages = [StageDef("disk", 1, (), disk),
              StageDef("customize", stage.STAGE.version, stage.STAGE.reads, customize_run,
                       stage.STAGE.tools, stage.STAGE.pins)]
    rdir = tmp_path / "recipes"
    rdir.mkdir()
    (rdir / "pw.toml").write_text(customize_support.RECIPE_HEAD + textwrap.dedent("""\
        [customize]
        hostname = "keyed"
        root_password = { env = "IRONFORGE_TEST_ENGINE_PW" }
    """))
    recipe = recipemod.load(rdir / "pw.toml")
    engine = Engine(Store(tmp_path / "cache"), accelmod.choose())
    first_pw, second_pw = "first-engine-pass-4d2e", "second-engine-pass-81fa"

    monkeypatch.setenv("IRONFORGE_TEST_ENGINE_PW", first_pw)
    r1 = engine.run(recipe, stages)
    r2 = engine.run(recipe, stages)
    monkeypatch.setenv("IRONFORGE_TEST_ENGINE_PW", second_pw)
    r3 = engine.run(recipe, stages)

    assert [s.hit for s in r1.steps] == [False, False]
    assert [s.hit for s in r2.steps] == [True, True]
    assert [s.hit for s in r3.steps] == [True, False] and r3.steps[1].reason == "customize.root_password changed"
    assert r1.steps[1].key != r3.steps[1].key
    assert len(opener.calls) == 2                      # one launch per customize run, none on a hit
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert first_pw.encode() not in data and second_pw.encode() not in data, f


def _boot_until_powered_off(disk: Path, serial: Path) -> str:
    """Boot ``disk`` itself (no throw-away overlay, unlike verify_image: what the guest writes stays)
    until the injected probe reports ready, then let the guest power itself off so its writes reach
    the disk. Checks systemd on the marker; returns the serial log."""
    import secrets as pysecrets

    from builder.runner.checks import run_checks
    from builder.runner.machine import Disk, MachineSpec, QemuMachine
    from builder.runner.waiter import SerialFollower, WatchConfig, watch

    accel = accelmod.choose()
    nonce = pysecrets.token_hex(8)
    spec = MachineSpec(arch="x86_64", accel=accel, memory_mb=1024, cpus=1, firmware="bios",
                       disks=(Disk(disk, "qcow2", "virtio"),), nic="virtio", serial_log=serial,
                       fw_cfg={"nonce": nonce}, smbios_oem_strings=(f"ironforge.nonce={nonce}",),
                       name="ironforge-test-firstboot")
    with QemuMachine(spec) as m:
        m.start()
        follower = SerialFollower(serial)
        try:
            outcome = watch(follower, WatchConfig(nonce=nonce, timeout=900, stall=300, kvm=accel.kvm),
                            lambda: m.returncode, start=m.started_at)
        finally:
            follower.close()
        assert outcome.ok, outcome.message + "\n" + "\n".join(outcome.tail)
        (check,) = run_checks(outcome.marker, ["systemd"], "x86_64")
        assert check.ok, check.detail                               # no failed unit
        assert m.wait(300) == 0                                     # the probe's clean poweroff
    return serial.read_text(errors="replace")


@pytest.mark.network
@pytest.mark.boot
@pytest.mark.slow      # customize + drivers + export + two TCG boots: about 8 minutes here
def test_firstboot_runs_once_at_boot_as_the_user_setup_expects(tmp_path):
    """The real pipeline (bootstrap -> disk -> drivers -> export, in the shared test engine cache:
    these customizations only edit files, so the disk stage applies them to the tree on the host)
    and two real boots of the same disk: on the first, the first-boot unit runs its commands after
    the accounts, sudoers and hostname are in place, then disables itself (the console shows each
    step); on the second, none of it runs again."""
    import linux_bootstrap_support as lbs
    from builder import pipeline, qemu_img
    from builder.runner.inject import inject_probe

    recipe = lbs.variant(
        "debian-12-amd64", customize__hostname="fbhost",
        customize__users=[{"name": "alice", "sudo": True, "ssh_keys": ALICE_KEYS[:1], "password": None,
                           "shell": "/bin/bash", "groups": []}],
        customize__firstboot=[
            "echo IRONFORGE-FB-HOST-$(hostname)",
            "runuser -u alice -- sudo -n true && echo IRONFORGE-FB-SUDO-OK",
            "test ! -e /var/lib/ironforge/firstboot.done && echo IRONFORGE-FB-FIRST-TIME",
        ])
    stages = pipeline.stages_for(recipe, verify=False)
    assert [s.name for s in stages] == ["bootstrap", "disk", "drivers", "export"]
    result = lbs.engine().run(recipe, stages)
    # one writable layer over the exported image, booted twice: the cached image stays as it was
    booted = qemu_img.overlay(result.artifacts["export"].image, tmp_path / "booted.qcow2")
    inject_probe(booted, accelmod.choose(), settle_seconds=240, what="firstboot test")

    first = _boot_until_powered_off(booted, tmp_path / "serial-1.log")
    at = [first.find(s) for s in ("ironforge-firstboot: command 1/3", "IRONFORGE-FB-HOST-fbhost",
                                  "IRONFORGE-FB-SUDO-OK", "IRONFORGE-FB-FIRST-TIME",
                                  "ironforge-firstboot: disabled", "ironforge-firstboot: done")]
    assert -1 not in at and at == sorted(at), (at, first[-4000:])

    second = _boot_until_powered_off(booted, tmp_path / "serial-2.log")
    assert "IRONFORGE-READY" in second                              # it did boot, and was watched
    for s in ("ironforge-firstboot", "ironforge first-boot commands", "IRONFORGE-FB-HOST", "IRONFORGE-FB-SUDO-OK",
              "IRONFORGE-FB-FIRST-TIME"):
        assert s not in second, (s, second[-4000:])

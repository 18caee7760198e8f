"""builder.linux.customize: the spec from a real recipe file, the generated first-boot files, and
the guest functions on a real Debian 12 filesystem through one real libguestfs launch."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from builder import qemu_img
from builder import recipe as recipemod
from builder import secrets
from builder.errors import BuildError, RecipeError, UsageError
from builder.host import accel as accelmod
from builder.host import guest_os
from builder.host.guestfs_session import Drive, session
from builder.linux import customize as cz
from builder.secrets import Secret

import customize_support

RECIPE_HEAD = customize_support.RECIPE_HEAD


def write_recipe(tmp_path: Path, customize_toml: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(RECIPE_HEAD + textwrap.dedent(customize_toml))
    return path


# --- spec from a recipe (no appliance) --------------------------------------------------------

def test_spec_from_recipe_resolves_secrets_reads_sources_and_hides_values(tmp_path):
    text = (customize_support.RECIPE_HEAD + customize_support.IDENTITY
            + 'packages = ["hello"]\ncommands = ["true"]\nfirstboot = ["echo hi"]\n' + customize_support.ACCOUNTS_AND_FILES)
    path = customize_support.recipe_dir(tmp_path, text)
    root_pw, alice_pw = customize_support.ROOT_PW, customize_support.ALICE_PW
    spec = cz.CustomizeSpec.from_recipe(recipemod.load(path), {"IRONFORGE_TEST_ROOT_PW": root_pw})
    assert spec.hostname == "forged" and spec.timezone == "Europe/Paris" and spec.locale == "en_US.UTF-8"
    assert secrets.verify_password(root_pw, spec.root_password.reveal())
    alice = spec.users[0]
    assert (alice.name, alice.sudo, alice.groups, alice.shell) == ("alice", True, ("adm", "users"), "/bin/bash")
    assert secrets.verify_password(alice_pw, alice.password.reveal())
    assert spec.files[0] == cz.FileSpec("/etc/motd", b"Welcome to forged\n", 0o600, "alice")
    assert spec.files[1] == cz.FileSpec("/opt/app/config.ini", b"[app]\nname = forged\n", 0o640, "root:adm")
    assert spec.needs_network and not cz.on_host(recipemod.load(path))
    for text in (repr(spec), str(spec.summary())):
        for s in (root_pw, alice_pw, spec.root_password.reveal(), alice.password.reveal()):
            assert s not in text
    assert spec.summary()["root"] == "password" and spec.summary()["sudo_users"] == ["alice"]


def test_spec_defaults_lock_root_and_need_no_network(tmp_path):
    spec = cz.CustomizeSpec.from_recipe(recipemod.load(write_recipe(tmp_path, "")), {})
    assert spec.root_password is None and spec.summary()["root"] == "locked"
    assert spec.users == () and not spec.needs_network
    assert (spec.hostname, spec.timezone, spec.locale) == ("localhost", "UTC", "C.UTF-8")


def test_spec_errors_name_what_is_missing(tmp_path):
    path = write_recipe(tmp_path, """
        [customize]
        root_password = { env = "IRONFORGE_TEST_UNSET_ROOT_PW" }
    """)
    with pytest.raises(UsageError) as exc:
        cz.CustomizeSpec.from_recipe(recipemod.load(path), {})
    assert exc.value.exit_code == 2
    assert "IRONFORGE_TEST_UNSET_ROOT_PW" in exc.value.message and "customize.root_password" in exc.value.message

    path = write_recipe(tmp_path, """
        [[customize.files]]
        path = "/etc/x"
        source = "does-not-exist"
    """)
    with pytest.raises(RecipeError, match=r"customize.files\[0\].source.*does-not-exist"):
        cz.CustomizeSpec.from_recipe(recipemod.load(path), {})


def test_firstboot_script_is_valid_sh_and_runs_each_command_once(tmp_path):
    cmds = ("echo 'it''s quoted' > out1", 'printf "%s\\n" "$HOME" > out2')
    script = cz.firstboot_script(cmds)
    (tmp_path / "fb.sh").write_text(script)
    subprocess.run(["sh", "-n", str(tmp_path / "fb.sh")], check=True)   # parses as POSIX sh
    for c in cmds:
        assert f"/bin/sh -c {cz.shlex.quote(c)}" in script
    assert script.index("touch " + cz.FIRSTBOOT_DONE) > script.index(cmds[-1].split()[0])
    assert f"ConditionPathExists=!{cz.FIRSTBOOT_DONE}" in cz.FIRSTBOOT_UNIT_TEXT
    assert "WantedBy=multi-user.target" in cz.FIRSTBOOT_UNIT_TEXT


# --- guest functions, one launch --------------------------------------------------------------

@pytest.fixture(scope="module")
def base_image():
    return customize_support.base_image()


@pytest.mark.network
def test_guest_functions_and_their_failures_in_one_launch(base_image, tmp_path):
    """One appliance: defaults lock an existing root hash; each failure mode is a BuildError
    that says what went wrong (failing command with its output, sudo missing, bad zone, bad group)."""
    before = customize_support.sha256_file(base_image)
    overlay = tmp_path / "layer.qcow2"
    qemu_img.overlay(base_image, overlay)
    with session([Drive(overlay, readonly=False, discard="besteffort")], accelmod.choose(),
                 what="customize test") as g:
        guest = guest_os.mount_os(g, what="customize test")
        assert guest.mountpoints == ("/",)

        # An installer-made image has a real root hash: the default (no root_password) locks it.
        old = secrets.hash_password("installer-root")
        cz.set_password_field(g, "root", Secret(old, "test"))
        facts = cz.apply(g, cz.CustomizeSpec(hostname="lockhost", timezone="Europe/Berlin"))
        assert facts["root"] == "locked" and facts["hostname"] == "lockhost"
        root = next(ln for ln in g.cat("/etc/shadow").splitlines() if ln.startswith("root:"))
        assert root.split(":")[1] == "!" + old
        assert g.cat("/etc/hostname") == "lockhost\n"
        assert "127.0.1.1\tlockhost" in g.cat("/etc/hosts").splitlines()
        assert g.readlink("/etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"
        assert g.cat("/etc/timezone") == "Europe/Berlin\n"
        assert g.cat("/etc/default/locale") == "LANG=C.UTF-8\n"
        st = g.statns("/etc/shadow")
        assert (st["st_mode"] & 0o7777, st["st_uid"]) == (0o640, 0)   # rewritten in place

        # Idempotent hosts edit: applying twice leaves one 127.0.1.1 line.
        cz.set_hostname(g, "lockhost2")
        assert [ln for ln in g.cat("/etc/hosts").splitlines() if ln.startswith("127.0.1.1")] == \
            ["127.0.1.1\tlockhost2"]

        # A failing build-time command: BuildError quoting its stdout and stderr and the exit code.
        with pytest.raises(BuildError) as exc:
            cz.run_commands(g, ("echo ok-first",
                                "echo out-before-failure; echo err-before-failure >&2; exit 7"))
        msg = exc.value.message
        assert "customize.commands[1]" in msg and "exit 7" in msg
        assert "out-before-failure" in msg and "err-before-failure" in msg
        assert exc.value.exit_code == 1

        with pytest.raises(BuildError, match="Mars/Olympus"):
            cz.set_timezone(g, "Mars/Olympus")
        with pytest.raises(BuildError, match="not a supported glibc locale"):
            cz.set_locale(g, "xx_YY.UTF-8")
        with pytest.raises(BuildError, match="no-such-group"):
            cz.add_user(g, cz.UserSpec("bob", groups=("no-such-group",)))

        # sudo = true on an image without sudo: refused before any slow step (the package list
        # would otherwise send apt to the network first).
        assert cz.package_installed(g, "sudo")
        cz.check_in_guest(g, "SUDO_FORCE_REMOVE=yes dpkg --purge sudo", "remove sudo for the test")
        assert not cz.package_installed(g, "sudo")
        with pytest.raises(BuildError, match="sudo = true but sudo is not installed") as exc:
            cz.apply(g, cz.CustomizeSpec(users=(cz.UserSpec("carol", sudo=True),), packages=("hello",)))
        assert "customize.packages" in exc.value.hint
        guest_os.trim(g, guest)
    assert customize_support.sha256_file(base_image) == before

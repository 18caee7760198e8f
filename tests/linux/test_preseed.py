"""builder/linux/preseed.py: recipe -> preseed; every variation passes debconf-set-selections."""

from __future__ import annotations

import copy
import subprocess

import pytest

from builder.errors import RecipeError
from builder.linux import preseed
from builder.recipe import Recipe, load

HASH = "$6$saltsaltsaltsalt$" + "x" * 86


@pytest.fixture(scope="module")
def base() -> Recipe:
    return load("debian-12-amd64-installer")


def variant(base: Recipe, **changes) -> Recipe:
    """The installer recipe with dotted keys replaced."""
    values = copy.deepcopy(base.values)
    for dotted, value in changes.items():
        node = values
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return Recipe(name=base.name, path=base.path, values=values)


def selections(text: str) -> dict[str, tuple[str, str, str]]:
    """question -> (owner, type, value), parsed the way debconf-set-selections splits a line."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        owner, question, kind, *value = line.split(" ", 3)
        out[question] = (owner, kind, value[0] if value else "")
    return out


def checkonly(text: str, tmp_path) -> None:
    path = tmp_path / "preseed.cfg"
    path.write_text(text)
    res = subprocess.run(["debconf-set-selections", "--checkonly", str(path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "error" not in res.stderr.lower(), res.stderr


VARIANTS = {
    "installer recipe as shipped": {},
    "https mirror with port and path": {"build__mirror": "https://mirror.example.org:8443/pub/debian/"},
    "gpt, bigger disk, no packages": {"disk__partition_table": "gpt", "disk__size": 8 << 30,
                                      "build__packages": []},
    "i386": {"arch": "i386"},
    "german locale and keymap, other timezone": {"installer__locale": "de_DE.UTF-8",
                                                 "installer__keymap": "de",
                                                 "customize__timezone": "Europe/Berlin"},
    "fqdn hostname": {"customize__hostname": "web1.example.org"},
    "user with groups": {"customize__users": [{"name": "admin", "ssh_keys": ["ssh-ed25519 AAAA x"],
                                               "sudo": True, "groups": ["adm", "sudo"]}]},
    "extra preseed lines": {"installer__extra_preseed": [
        "d-i preseed/late_command string in-target true",
        "d-i apt-setup/services-select multiselect security, updates"]},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_pass_debconf_checkonly(base, name, tmp_path):
    text = preseed.render(preseed.from_recipe(variant(base, **VARIANTS[name])))
    checkonly(text, tmp_path)


def test_shipped_recipe_answers_what_the_spec_lists(base):
    s = selections(preseed.render(preseed.from_recipe(base)))
    v = {q: s[q][2] for q in s}
    assert v["debian-installer/locale"] == "en_US.UTF-8"
    assert v["keyboard-configuration/xkb-keymap"] == "us"
    assert v["netcfg/choose_interface"] == "auto"
    assert v["netcfg/get_hostname"] == "debian12" and v["netcfg/get_domain"] == ""
    assert v["mirror/country"] == "manual" and v["mirror/protocol"] == "http"
    assert v["mirror/http/hostname"] == "deb.debian.org"
    assert v["mirror/http/directory"] == "/debian"
    assert v["mirror/http/proxy"] == "" and v["mirror/suite"] == "bookworm"
    assert v["clock-setup/utc"] == "true" and v["time/zone"] == "UTC" and v["clock-setup/ntp"] == "false"
    assert v["partman-auto/disk"] == "/dev/vda" and v["partman-auto/method"] == "regular"
    assert v["partman-auto/choose_recipe"] == "atomic"
    for q in ("partman-partitioning/confirm_write_new_label", "partman/confirm",
              "partman/confirm_nooverwrite"):
        assert v[q] == "true"
    assert v["partman/choose_partition"] == "finish"
    assert s["apt-setup/services-select"][1:] == ("multiselect", "")
    assert v["base-installer/install-recommends"] == "false"
    assert v["base-installer/kernel/image"] == "linux-image-amd64"
    assert s["tasksel/first"] == ("tasksel", "multiselect", "")
    assert v["pkgsel/run_tasksel"] == "false"
    assert v["pkgsel/include"].split() == base.get("build.packages")
    assert v["grub-installer/bootdev"] == "/dev/vda"
    assert s["finish-install/reboot_in_progress"][1] == "note"
    assert v["debian-installer/exit/poweroff"] == "true"
    # no root password and no users in the recipe: root locked with a hash nothing matches,
    # still a preseeded value so user-setup asks nothing
    assert v["passwd/root-login"] == "true"
    assert v["passwd/root-password-crypted"] == preseed.LOCKED_ROOT_HASH
    assert s["passwd/root-password-crypted"][1] == "password"
    assert v["passwd/make-user"] == "false"


def test_https_mirror_split(base):
    s = selections(preseed.render(preseed.from_recipe(
        variant(base, build__mirror="https://mirror.example.org:8443/pub/debian/"))))
    assert s["mirror/protocol"][2] == "https"
    assert s["mirror/https/hostname"][2] == "mirror.example.org:8443"
    assert s["mirror/https/directory"][2] == "/pub/debian"
    assert "mirror/http/hostname" not in s


@pytest.mark.parametrize("url,expected", [
    ("http://deb.debian.org/debian", ("http", "deb.debian.org", "/debian")),
    ("http://127.0.0.1:3142/debian/", ("http", "127.0.0.1:3142", "/debian")),
    ("https://[2001:db8::1]/debian", ("https", "[2001:db8::1]", "/debian")),
    ("http://mirror.local", ("http", "mirror.local", "/")),
])
def test_split_mirror(url, expected):
    m = preseed.split_mirror(url)
    assert (m.protocol, m.hostname, m.directory) == expected


@pytest.mark.parametrize("url", ["ftp://ftp.debian.org/debian", "file:///srv/debian", "deb.debian.org",
                                 "http://user:pw@mirror/debian"])
def test_bad_mirror_is_a_recipe_error(base, url):
    with pytest.raises(RecipeError) as e:
        preseed.from_recipe(variant(base, build__mirror=url))
    assert "build.mirror" in str(e.value)


def test_root_password_hash_and_first_user(base, tmp_path):
    r = variant(base, customize__users=[{"name": "ops", "groups": ["adm"]}, {"name": "second"}])
    text = preseed.render(preseed.from_recipe(r, root_password_hash=HASH, user_password_hash=None))
    checkonly(text, tmp_path)
    s = selections(text)
    assert s["passwd/root-login"][2] == "true"
    assert s["passwd/root-password-crypted"][2] == HASH
    assert s["passwd/make-user"][2] == "true" and s["passwd/username"][2] == "ops"
    assert s["passwd/user-password-crypted"][2] == preseed.LOCKED_USER_HASH   # key-only login
    assert s["passwd/user-default-groups"][2] == "adm"


def test_users_without_root_password_disable_root_login(base):
    r = variant(base, customize__users=[{"name": "ops"}])
    s = selections(preseed.render(preseed.from_recipe(r, user_password_hash=HASH)))
    assert s["passwd/root-login"][2] == "false"          # d-i locks root and gives ops sudo
    assert "passwd/root-password-crypted" not in s
    assert s["passwd/user-password-crypted"][2] == HASH


def test_i386_gets_the_pae_kernel(base):
    s = selections(preseed.render(preseed.from_recipe(variant(base, arch="i386"))))
    assert s["base-installer/kernel/image"][2] == "linux-image-686-pae"


def test_gpt_label(base):
    s = selections(preseed.render(preseed.from_recipe(variant(base, disk__partition_table="gpt"))))
    assert s["partman-partitioning/choose_label"][2] == "gpt"


def test_extra_preseed_lines_are_verbatim_at_the_end(base):
    extra = ["d-i preseed/late_command string in-target touch /etc/ironforge", "# a comment"]
    text = preseed.render(preseed.from_recipe(variant(base, installer__extra_preseed=extra)))
    assert text.splitlines()[-2:] == extra


def test_line_breaks_cannot_inject_answers(base):
    with pytest.raises(ValueError):
        preseed.render(preseed.from_recipe(variant(base, installer__locale="en_US.UTF-8\nd-i x y z")))
    with pytest.raises(ValueError):
        preseed.render(preseed.from_recipe(variant(base, installer__extra_preseed=["a b c d\ne f g h"])))


def test_bad_hostname_and_user_name_are_recipe_errors(base):
    with pytest.raises(RecipeError) as e:
        preseed.from_recipe(variant(base, customize__hostname="not a host",
                                    customize__users=[{"name": "Root User"}]))
    text = str(e.value)
    assert "customize.hostname" in text and "customize.users[0].name" in text


def test_release_13_is_trixie(base):
    s = selections(preseed.render(preseed.from_recipe(variant(base, os__release="13"))))
    assert s["mirror/suite"][2] == "trixie"

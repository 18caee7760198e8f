"""The one Debian release table, and every consumer agreeing with it."""

import pytest

from builder import recipe as recipemod
from builder.errors import BuildError, RecipeError, UsageError
from builder.fetch import debian
from builder.linux import packages, preseed, releases

from linux_bootstrap_support import variant


def test_table_lookups():
    assert releases.find("12").codename == "bookworm" and releases.find(" Trixie ").number == "13"
    assert releases.find(13) is releases.BY_NUMBER["13"] and releases.find("11") is None
    assert releases.find("bookworm").kernel("amd64") == "linux-image-amd64"
    assert releases.find("bookworm").kernel("i386") == "linux-image-686-pae"
    assert releases.find("trixie").kernel("i686") is None


@pytest.mark.parametrize("rel", releases.RELEASES, ids=lambda r: r.codename)
def test_every_consumer_reads_the_table(rel):
    assert recipemod.DEBIAN_RELEASES[rel.number] == rel.codename
    assert packages.suite_for(rel.number) == debian.suite_for(rel.number) == debian.suite_for(rel.codename) \
        == rel.codename
    assert debian.number_for(rel.codename) == rel.number
    for arch in ("x86_64", "i686"):
        t = packages.Target(rel.number, arch, "bios")
        if rel.kernel(arch) is None:
            with pytest.raises(BuildError, match="no i386 kernel"):
                packages.boot_packages(t)
        else:
            assert packages.boot_packages(t)[0] == rel.kernel(arch)


def test_unknown_release_is_refused_by_each_in_its_own_terms():
    with pytest.raises(UsageError, match="unknown Debian release"):
        debian.suite_for("11")
    with pytest.raises(BuildError, match="not supported"):
        packages.suite_for("11")


def test_preseed_takes_the_kernel_from_the_table_and_refuses_an_arch_without_one():
    i386 = preseed.from_recipe(variant("debian-12-amd64-installer", arch="i386"))
    assert i386.kernel == "linux-image-686-pae"
    assert "base-installer/kernel/image string linux-image-686-pae" in preseed.render(i386)
    with pytest.raises(RecipeError) as e:
        preseed.from_recipe(variant("debian-12-amd64-installer", arch="i386", os__release="13"))
    assert "amd64" in str(e.value) and "i386" not in e.value.problems[0].expected

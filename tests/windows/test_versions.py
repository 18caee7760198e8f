"""The Windows version table and identification from hive facts (spec §1.3)."""

import pytest

from builder.errors import UsageError
from builder.windows import versions as V


@pytest.mark.parametrize("major,minor,build,itype,product,want", [
    (6, 1, 7601, "Client", "Windows 7 Professional", "win7"),
    (6, 1, 7601, "Server", "Windows Server 2008 R2 Standard", "win2k8r2"),
    (6, 1, 7601, None, "Windows Server 2008 R2 Standard", "win2k8r2"),   # no InstallationType
    (6, 2, 9200, "Client", "Windows 8 Pro", "win8"),
    (6, 3, 9600, "Server", "Windows Server 2012 R2 Datacenter", "win2k12r2"),
    (10, 0, 19045, "Client", "Windows 10 Pro", "win10"),
    (10, 0, 21999, "Client", "Windows 10 Pro", "win10"),
    (10, 0, 22000, "Client", "Windows 10 Pro", "win11"),                 # real Win11 says "10"
    (10, 0, 22631, "Client", "Windows 10 Home", "win11"),
    (10, 0, 14393, "Server", "Windows Server 2016 Standard", "win2k16"),
    (10, 0, 17763, "Server", "Windows Server 2019 Datacenter", "win2k19"),
    (10, 0, 20348, "Server Core", "Windows Server 2022 Standard", "win2k22"),
    (10, 0, 26100, "Server", "Windows Server 2025 Datacenter", "win2k25"),
    (10, 0, 26100, "Server", "Windows Server Datacenter", "win2k25"),     # no year: by build
    (10, 0, 17763, "Server", "Windows Server Standard", "win2k19"),
    (5, 1, 2600, None, "Microsoft Windows XP", "winxp"),
    (5, 2, 3790, None, "Microsoft Windows XP Professional x64", "winxp"),
    (5, 2, 3790, None, "Microsoft Windows Server 2003 R2", "win2k3r2"),
    (5, 2, 3790, None, "Microsoft Windows Server 2003", "win2k3"),
    (6, 0, 6002, "Client", "Windows Vista Business", "winvista"),
])
def test_identify(major, minor, build, itype, product, want):
    assert V.identify(major, minor, build, itype, product).osinfo == want


def test_identify_unknown_version_is_a_clear_error():
    with pytest.raises(UsageError, match="NT 4.0"):
        V.identify(4, 0, 1381, None, "Windows NT 4.0")


def test_driver_database_from_windows_8_on():
    assert not V.by_osinfo("win7").driver_database
    assert not V.by_osinfo("win2k8r2").driver_database
    assert V.by_osinfo("win8").driver_database
    assert all(V.by_osinfo(o).driver_database for o in ("win10", "win11", "win2k19", "win2k22", "win2k25"))


@pytest.mark.parametrize("word,osinfo,folder", [
    ("7", "win7", "w7"), ("10", "win10", "w10"), ("11", "win11", "w11"),
    ("server-2019", "win2k19", "2k19"), ("server-2022", "win2k22", "2k22"),
    ("server-2025", "win2k25", "2k25"), ("2022", "win2k22", "2k22")])
def test_by_release(word, osinfo, folder):
    v = V.by_release(word)
    assert (v.osinfo, v.virtio_os, v.release in V.releases()) == (osinfo, folder, True)


def test_by_release_unknown_lists_the_known_ones():
    with pytest.raises(UsageError) as ei:
        V.by_release("vista")
    assert "server-2022" in ei.value.hint


def test_arches():
    assert V.by_release("10").supports("x86") and V.by_release("10").supports("amd64")
    assert V.by_release("11").supports("x86_64") and not V.by_release("11").supports("i386")
    for word in ("server-2019", "server-2022", "server-2025"):
        assert V.by_release(word).arches == ("x86_64",)
    assert V.word("i686") == "x86" and V.word("x86_64") == "amd64"


def test_osinfo_ids_and_folders_are_unique_where_they_must_be():
    ids = [v.osinfo for v in V.VERSIONS]
    assert len(ids) == len(set(ids))
    # two ids share a folder only where virtio-win itself does (2k3, 2k8)
    by_folder = {}
    for v in V.VERSIONS:
        by_folder.setdefault(v.virtio_os, []).append(v.osinfo)
    shared = {k: sorted(x) for k, x in by_folder.items() if len(x) > 1}
    assert shared == {"2k3": ["win2k3", "win2k3r2"], "2k8": ["win2k8", "winvista"]}

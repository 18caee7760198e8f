from builder.linux.guestfacts import Package, parse_dpkg_status, parse_os_release

STATUS = """Package: zlib1g
Status: install ok installed
Priority: required
Architecture: i386
Version: 1:1.2.13.dfsg-1
Description: compression library
 a continuation line: Package: fake

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b7
"""


def test_dpkg_status_lists_installed_packages_only_sorted():
    assert parse_dpkg_status(STATUS) == [Package("bash", "5.2.15-2+b7", "amd64"),
                                         Package("zlib1g", "1:1.2.13.dfsg-1", "i386")]


def test_os_release_quotes_and_comments():
    text = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
            'VERSION_ID="12"\n# c\nID=debian\nVERSION_CODENAME=bookworm\n')
    osr = parse_os_release(text)
    assert osr["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)" and osr["ID"] == "debian"
    assert osr["VERSION_ID"] == "12" and osr["VERSION_CODENAME"] == "bookworm"

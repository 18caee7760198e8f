"""What changed between two versions' key materials and package lists."""

from __future__ import annotations

from builder.rebuild.changes import inputs_changed, package_diff, packages_from, read_packages, render_markdown


def _mat(**over):
    m = {"stage": "bootstrap", "version": 1, "code": {"builder/stages/bootstrap.py": "a"},
         "reads": {"build.mirror": "http://m", "customize": {"hostname": "h"},
                   "customize.root_password": {"ref": {"env": "X"}, "token": "t1"}},
         "tools": {"mmdebstrap": "1.3.5"}, "pins": {"inrelease_sha256": "0" * 64, "release_date": "d1"}}
    m.update(over)
    return m


def test_each_kind_of_input_change_is_named():
    old = {"bootstrap": _mat(), "disk": _mat(stage="disk", tools={"qemu-img": "7.2.1"})}
    new = {"bootstrap": _mat(version=2, code={"builder/stages/bootstrap.py": "b"},
                             reads={"build.mirror": "http://n", "customize": {"hostname": "h2"},
                                    "customize.root_password": {"ref": {"env": "X"}, "token": "t2"}},
                             tools={"mmdebstrap": "1.4.0"}, pins={"inrelease_sha256": "1" * 64, "release_date": "d2"}),
           "disk": _mat(stage="disk", tools={"qemu-img": "7.2.1"}), "export": _mat(stage="export")}
    ch = inputs_changed(old, new)
    assert ch["stage_versions"] == [{"stage": "bootstrap", "old": 1, "new": 2}]
    assert ch["code"] == [{"file": "builder/stages/bootstrap.py", "stages": ["bootstrap"]}]
    assert {"key": "build.mirror", "old": "http://m", "new": "http://n"} in ch["recipe"]
    assert {"key": "customize.hostname", "old": "h", "new": "h2"} in ch["recipe"]
    # a secret's token changed: the key is named, no token or value is published
    assert {"key": "customize.root_password"} in ch["recipe"]
    assert ch["tools"] == [{"tool": "mmdebstrap", "old": "1.3.5", "new": "1.4.0", "stages": ["bootstrap"]}]
    assert [(u["pin"], u["old"], u["new"]) for u in ch["upstream"]] == [
        ("inrelease_sha256", "0" * 64, "1" * 64), ("release_date", "d1", "d2")]
    assert ch["stages_added"] == ["export"] and ch["stages_removed"] == []
    md = render_markdown({"recipe": "r", "version": "v", "built_at": "now", "previous": "p", "changed": ch,
                          "stages": [], "packages": None})
    assert "t1" not in md and "t2" not in md and "customize.root_password (value not shown)" in md
    assert "- upstream: bookworm InRelease" not in md       # no suite pin here: named by stage
    assert "Date d1 → d2" in md and "sha256 000000000000… → 111111111111…" in md


def test_no_previous_version_is_a_first_version():
    ch = inputs_changed(None, {"bootstrap": _mat()})
    assert ch["first_version"] is True and not ch["upstream"]


def test_package_diff_reads_packages_txt_and_orders_versions(tmp_path):
    p = tmp_path / "packages.txt"
    p.write_text("libc6\t2.36-9\tamd64\nopenssl\t3.0.13-1\tamd64\nold\t1\tall\nlibc6\t2.36-9\ti386\n")
    old = read_packages(p)
    assert set(old) == {"libc6:amd64", "libc6:i386", "openssl", "old"}
    new = packages_from([{"name": "libc6", "version": "2.36-9+deb12u4", "arch": "amd64"},
                         {"name": "libc6", "version": "2.36-9", "arch": "i386"},
                         {"name": "openssl", "version": "3.0.11-1", "arch": "amd64"},
                         {"name": "new", "version": "2", "arch": "all"}])
    d = package_diff(old, new)
    assert d["upgraded"] == [{"name": "libc6:amd64", "old": "2.36-9", "new": "2.36-9+deb12u4"}]
    assert d["downgraded"] == [{"name": "openssl", "old": "3.0.13-1", "new": "3.0.11-1"}]
    assert d["added"] == [{"name": "new", "version": "2"}] and d["removed"] == [{"name": "old", "version": "1"}]
    assert package_diff(None, new) is None

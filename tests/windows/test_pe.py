"""PE machine type from a header; the phony stub cmd.exe is what `file` calls PE32 / PE32+."""

import subprocess

import pytest

from builder.errors import WindowsImageError
from builder.windows.pe import machine_arch
from windows.phony import stub_cmd_exe


@pytest.mark.parametrize("arch,want,file_says", [("x86", "i686", "PE32 executable (console) Intel 80386"),
                                                 ("amd64", "x86_64", "PE32+ executable (console) x86-64")])
def test_stub_cmd_exe(tmp_path, arch, want, file_says):
    data = stub_cmd_exe(arch)
    assert machine_arch(data) == want
    p = tmp_path / "cmd.exe"
    p.write_bytes(data)
    assert file_says in subprocess.run(["file", "-b", str(p)], capture_output=True, text=True).stdout


def _with(data, off, fmt_bytes):
    b = bytearray(data)
    b[off:off + len(fmt_bytes)] = fmt_bytes
    return bytes(b)


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: b"ZM" + d[2:], "no MZ"),
    (lambda d: _with(d, 0x3C, b"\xf0\xff\x00\x00"), "outside"),
    (lambda d: _with(d, 0x80, b"NE\0\0"), "no PE signature"),
    (lambda d: _with(d, 0x84, b"\x64\xaa"), "ARM64"),
    (lambda d: _with(d, 0x84, b"\x66\x01"), "unknown PE machine"),
    (lambda d: _with(d, 0x98, b"\x0b\x01"), "expected PE32+"),
    (lambda d: d[:0x30], "no MZ"),
])
def test_bad_headers_are_clear_errors(mutate, msg):
    with pytest.raises(WindowsImageError, match=msg):
        machine_arch(mutate(stub_cmd_exe("amd64")))

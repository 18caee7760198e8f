"""The first-boot script: CRLF, allow-list, retry cap, per-INF status, self-clearing."""

from builder.windows import firstboot as FB


def test_script_shape():
    s = FB.script(["viostor.inf", "netkvm.inf"], retry_cap=5)
    assert s.endswith(b"\r\n") and b"\n" not in s.replace(b"\r\n", b"")
    t = s.decode("ascii")
    assert "for %%I in (viostor.inf netkvm.inf) do call :one %%I" in t
    assert "set MAX=5" in t and "if %N% GEQ %MAX% goto giveup" in t
    assert '>"%HERE%\\status\\%1.txt" echo failed exit=%RC% boot=%N%' in t
    assert t.count('reg add "HKLM\\SYSTEM\\Setup"') == 2


def test_setup_pending():
    assert not FB.setup_pending("", 0) and not FB.setup_pending(None, None)
    assert FB.setup_pending("oobe\\windeploy.exe", 1)
    assert not FB.setup_pending(FB.CMDLINE, 2)           # ours: re-injection is fine

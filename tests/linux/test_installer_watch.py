"""builder/linux/installer_watch.py on serial output recorded from real bookworm installer runs here.

console-/syslog-unanswered-mirror.log: the same, with mirror/http/hostname preseeded empty.

tests/linux/data/console-download-404.log: ttyS0 (newt UI in GNU screen) of a preseeded netboot
run against deb.debian.org, which serves no .udeb components, trimmed to start at the first
dialog (whitespace-only screen-clear lines dropped); syslog-download-404.log: its ttyS1 syslog
(kernel lines and netcfg's IPv6 chatter thinned).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from builder.errors import InstallerError
from builder.linux import installer_watch as iw

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8", "replace")


def chunks(text: str, seed: int) -> list[str]:
    """Cut text at random places, as reads of a growing log file do (splitting escapes too)."""
    rnd = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        k = rnd.randint(1, 300)
        out.append(text[i:i + k])
        i += k
    return out


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_console_titles_from_the_recorded_run(seed):
    text = read("console-download-404.log")
    c = iw.Console()
    for part in ([text] if seed is None else chunks(text, seed)):
        c.feed(part)
    titles = [t for i, t in enumerate(c.titles) if i == 0 or c.titles[i - 1] != t]
    assert titles == ["Detecting network hardware", "Detecting link on ens4; please wait...",
                      "Waiting for link-local address...", "Attempting IPv6 autoconfiguration...",
                      "Configuring the network with DHCP", "Checking the Debian archive mirror",
                      "Loading additional components", "[!!] Download installer components"]
    body = c.dialog_text["[!!] Download installer components"]
    assert "The installer failed to download a file from the mirror. This may be" in body
    assert "Downloading a file failed:" in body
    assert "Retry" in body and "Change mirror" in body


def test_console_lines_have_no_escapes_or_box_drawing():
    lines = iw.strip_console(read("console-download-404.log"))
    assert lines and not any("\x1b" in x or "qqqq" in x for x in lines)
    # GNU screen's status line and clock are not content
    assert not any("Nov 24" in x for x in lines)


def test_syslog_steps_and_the_failed_component():
    s = iw.Syslog(clock=lambda: 0.0)
    for part in chunks(read("syslog-download-404.log"), 7):
        s.feed(part)
    assert [x.package for x in s.steps] == ["preseed", "language", "brltty-udeb", "ethdetect", "netcfg",
                                            "choose-mirror", "download-installer"]
    assert s.preseed_loaded
    [f] = s.failures
    assert f.component == "apt-mirror-setup"
    assert f.status == "404" and f.reason == "Not Found"
    assert f.url == "http://deb.debian.org/debian/pool/main/a/apt-setup/apt-mirror-setup_0.182_all.udeb"
    assert f.host == "deb.debian.org"


def test_watch_verdict_names_dialog_component_mirror_and_status():
    w = iw.Watch(clock=lambda: 0.0)
    events = w.feed(console=read("console-download-404.log"), syslog=read("syslog-download-404.log"))
    assert "dialog: [!!] Download installer components" in events
    assert "step: Configure the network" in events
    v = w.stopped()
    assert v is not None and not v.ok
    assert v.title == "[!!] Download installer components"
    assert "Download installer components" in v.cause and "apt-mirror-setup" in v.cause
    assert "deb.debian.org" in v.cause and "404" in v.cause
    assert "\n" not in v.cause


def test_an_unanswered_question_is_named_by_its_title():
    # Recorded with a preseed whose mirror/http/hostname was empty: choose-mirror stops at a
    # critical dialog and the installer goes silent.
    w = iw.Watch(clock=lambda: 0.0)
    events = w.feed(console=read("console-unanswered-mirror.log"),
                    syslog=read("syslog-unanswered-mirror.log"))
    assert events[-1] == "step: Choose a mirror of the Debian archive"
    assert "dialog: [!!] Choose a mirror of the Debian archive" in events
    v = w.stopped()
    assert v.title == "[!!] Choose a mirror of the Debian archive" and not v.failures
    assert v.cause.startswith("installer is waiting at a question the preseed did not answer: "
                              "'[!!] Choose a mirror of the Debian archive'")
    assert "Bad archive mirror" in v.cause
    assert "\n" not in v.cause
    assert w.screen()[-1] == "<Go Back> <Continue>"


def test_progress_titles_are_not_questions():
    w = iw.Watch(clock=lambda: 0.0)
    text = read("console-download-404.log")
    w.feed(console=text[:text.index("[!!] Download")])
    assert w.waiting is None and w.stopped() is None


def test_screen_clock_redraws_are_not_progress():
    # GNU screen redraws its status line (with a clock) every minute even when nothing happens
    clock = [0.0]
    w = iw.Watch(clock=lambda: clock[0])
    w.feed(console="\x1b[24;1H\x1b[32m[ \x1b[31m(\x1b[37m1*installer\x1b[31m)\x1b[37m  2 shell  "
                   "3 shell  4- log \x1b[32m][\x1b[34m Nov 24 \x1b[37m19:01 \x1b[32m]\r\n")
    first = w.last_progress
    clock[0] = 60.0
    w.feed(console="\x1b[24;1H\x1b[32m[ \x1b[31m(\x1b[37m1*installer\x1b[31m)\x1b[37m  2 shell  "
                   "3 shell  4- log \x1b[32m][\x1b[34m Nov 24 \x1b[37m19:02 \x1b[32m]\r\n")
    assert w.last_progress == first
    clock[0] = 61.0
    w.feed(syslog="Nov 24 19:02:01 netcfg[1]: something happened\n")
    assert w.last_progress == 61.0


def test_redaction_of_password_answers():
    assert "$6$" not in iw._redact("Nov 24 preseed: d-i passwd/root-password-crypted password $6$abc$def")


# -- follow(): the loop around a machine -----------------------------------------------------------

class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Machine:
    """Stand-in for a running QemuMachine: follow() only asks whether it runs and how it ended.
    (Stalls and timeouts of minutes cannot be produced by a real installer inside a unit test.)"""

    def __init__(self, clock: _Clock, runs_for: float | None = None, code: int = 0,
                 reason: str = "guest-shutdown", writes=()):
        self.clock, self.runs_for, self.code, self.reason = clock, runs_for, code, reason
        self.writes = list(writes)       # (time, path, text) appended as time passes

    def running(self) -> bool:
        self.clock.t += 1.0              # each poll advances the fake clock by a second
        while self.writes and self.writes[0][0] <= self.clock.t:
            _, path, text = self.writes.pop(0)
            with open(path, "a") as f:
                f.write(text)
        return self.runs_for is None or self.clock.t < self.runs_for

    @property
    def returncode(self):
        return None if self.running() else self.code

    def events(self):
        return [{"event": "SHUTDOWN", "data": {"reason": self.reason}}]


@pytest.fixture
def logs(tmp_path):
    con, sys_ = tmp_path / "ttyS0.log", tmp_path / "ttyS1.log"
    con.write_text("")
    sys_.write_text("")
    return con, sys_


def test_follow_fails_fast_on_the_download_error(logs, monkeypatch):
    monkeypatch.setattr(iw.time, "sleep", lambda s: None)
    con, sys_ = logs
    clock = _Clock()
    m = _Machine(clock, writes=[(3, con, read("console-download-404.log")),
                                (2, sys_, read("syslog-download-404.log"))])
    with pytest.raises(InstallerError) as e:
        iw.follow(m, con, sys_, timeout=5400, stall=900, clock=clock)
    assert clock.t < 10, "no waiting for the stall timeout once the [!!] dialog shows"
    err = e.value
    assert err.cause.startswith("installer stopped at '[!!] Download installer components'")
    assert "apt-mirror-setup" in err.cause and "deb.debian.org" in err.cause and "404" in err.cause
    assert "ERROR 404: Not Found" in err.message         # the last syslog lines are quoted
    assert err.hint and "mirror" in err.hint
    assert err.steps[-1] == "download-installer"


def test_follow_reports_a_stall(logs, monkeypatch):
    monkeypatch.setattr(iw.time, "sleep", lambda s: None)
    con, sys_ = logs
    clock = _Clock()
    lines = read("syslog-download-404.log").splitlines(keepends=True)[:40]
    m = _Machine(clock, writes=[(2, sys_, "".join(lines))])
    with pytest.raises(InstallerError) as e:
        iw.follow(m, con, sys_, timeout=5400, stall=60, clock=clock)
    assert "no progress for 60 s" in e.value.cause
    assert 60 <= clock.t <= 70


def test_follow_reports_the_overall_timeout(logs, monkeypatch):
    monkeypatch.setattr(iw.time, "sleep", lambda s: None)
    con, sys_ = logs
    clock = _Clock()
    writes = [(t, sys_, f"Nov 24 19:00:{t % 60:02d} main-menu[1]: INFO: still busy {t}\n")
              for t in range(1, 200)]
    with pytest.raises(InstallerError) as e:
        iw.follow(_Machine(clock, writes=writes), con, sys_, timeout=100, stall=30, clock=clock)
    assert "did not finish within 100 s" in e.value.cause


def test_follow_success_needs_finish_install_and_a_poweroff(logs, monkeypatch):
    monkeypatch.setattr(iw.time, "sleep", lambda s: None)
    con, sys_ = logs
    done = "".join(f"Nov 24 19:0{i}:00 main-menu[9]: INFO: Menu item '{p}' selected\n"
                   for i, p in enumerate(["netcfg", "pkgsel", "grub-installer", "finish-install"]))
    clock = _Clock()
    out = iw.follow(_Machine(clock, runs_for=5, writes=[(2, sys_, done)]), con, sys_, timeout=100,
                    stall=30, clock=clock)
    assert out.steps == ["netcfg", "pkgsel", "grub-installer", "finish-install"]

    # the same log, but the guest reset instead of powering off
    sys_.write_text("")
    clock = _Clock()
    with pytest.raises(InstallerError) as e:
        iw.follow(_Machine(clock, runs_for=5, reason="guest-reset", writes=[(2, sys_, done)]), con, sys_,
                  timeout=100, stall=30, clock=clock)
    assert "rebooted instead of powering off" in e.value.cause


def test_follow_machine_gone_early_is_an_error(logs, monkeypatch):
    monkeypatch.setattr(iw.time, "sleep", lambda s: None)
    con, sys_ = logs
    clock = _Clock()
    with pytest.raises(InstallerError) as e:
        iw.follow(_Machine(clock, runs_for=3, code=1, reason="guest-reset"), con, sys_, timeout=100,
                  stall=30, clock=clock)
    assert "stopped (exit code 1, guest-reset) before the installer finished" in e.value.cause


def test_follow_stops_at_an_unanswered_question_after_settling(logs, monkeypatch):
    monkeypatch.setattr(iw.time, "sleep", lambda s: None)
    con, sys_ = logs
    clock = _Clock()
    m = _Machine(clock, writes=[(2, sys_, read("syslog-unanswered-mirror.log")),
                                (3, con, read("console-unanswered-mirror.log"))])
    with pytest.raises(InstallerError) as e:
        iw.follow(m, con, sys_, timeout=5400, stall=900, settle=8, clock=clock)
    # waits a few seconds for the syslog to name a cause, never for the stall timeout
    assert 8 <= clock.t < 20
    assert "'[!!] Choose a mirror of the Debian archive'" in e.value.cause
    assert "installer.extra_preseed" in e.value.hint
    assert "Bad archive mirror" in e.value.message

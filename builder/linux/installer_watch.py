"""Follow a running debian-installer through its two serial ports and decide how it ended.

ttyS0 carries the installer's newt UI inside GNU screen: cursor moves, colours and DEC line
drawing. Dialog and progress-bar titles sit on the top border of their box, drawn as
``lqqq…u`` TITLE ``tqqq…k`` in the line-drawing character set, so a title is the plain text
between an alternate-charset run ending in ``u`` and one starting with ``t``. A title that
starts with a priority mark (``[!!]``, ``[!]``, ``[.]``) is a question waiting for an answer:
at ``priority=critical`` nothing but an error or a question the preseed did not answer gets
that far.

ttyS1 carries the installer's syslog (an inittab line in the injected initrd runs ``tail``
on it). It names each installer step (``main-menu: Menu item 'netcfg' selected``) and the
cause of a failure (``anna: … ERROR 404: Not Found`` after the URL of the component).

``Watch`` is pure parsing (fed text, asked for a verdict) so it is tested on recorded serial
output; ``follow`` drives it against a live ``QemuMachine`` with the timeouts.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from builder.errors import InstallerError

log = logging.getLogger("ironforge.installer")

# main-menu item (package) -> the step name a person sees in the installer's menu
STEP_NAMES = {
    "brltty-udeb": "Braille display support",
    "localechooser": "Choose language",
    "console-setup-udeb": "Configure the keyboard",
    "ethdetect": "Detect network hardware",
    "netcfg": "Configure the network",
    "choose-mirror": "Choose a mirror of the Debian archive",
    "download-installer": "Download installer components",
    "user-setup-udeb": "Set up users and passwords",
    "clock-setup": "Configure the clock",
    "partman-base": "Partition disks",
    "base-installer": "Install the base system",
    "apt-setup-udeb": "Configure the package manager",
    "pkgsel": "Select and install software",
    "grub-installer": "Install the GRUB boot loader",
    "finish-install": "Finish the installation",
}
PRIORITY_MARKS = ("[!!]", "[!]", "[.]")

# Bounds on what a console or syslog (a broken or hostile guest) can make us keep in memory.
MAX_LINE = 4096          # characters of one line
MAX_TITLES = 200         # dialog titles remembered
MAX_STEPS = 2000         # installer steps and failures remembered
READ_CHUNK = 4 << 20     # bytes read from a log per poll

_CSI = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])")
_SCREEN_STATUS = re.compile(r"\[[^\[\]]*\]\[ *\w{3} +\d+ +\d\d:\d\d *\]")   # screen's hardstatus + clock


@dataclass(frozen=True)
class Step:
    package: str          # main-menu item, e.g. "netcfg"; "language" for the locale being set
    name: str             # what a person calls it
    at: float             # monotonic time it was seen (0 when parsed from a file)


@dataclass(frozen=True)
class DownloadFailure:
    component: str        # udeb name, e.g. "apt-mirror-setup"
    url: str
    status: str           # "404" (HTTP) or the wget error text
    reason: str           # "Not Found"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


@dataclass
class Verdict:
    ok: bool
    cause: str                                 # one line
    title: str | None = None                   # dialog that stopped it
    failures: list[DownloadFailure] = field(default_factory=list)


# -- ttyS0: the newt UI ------------------------------------------------------------------------

class Console:
    """Incremental reader of the installer's serial console: titles and readable screen text."""

    def __init__(self):
        self._carry = ""
        self._g0_alt = False      # ESC ( 0 selects line drawing for G0, ESC ( B ascii
        self._g1_alt = False      # ESC ) 0 for G1
        self._shifted = False     # SO (0x0e) selects G1, SI (0x0f) G0
        self._last_alt = ""       # the most recent run of line-drawing characters
        self._plain = []          # plain text since that run
        self._after_title = False
        self.titles: list[str] = []
        self.lines: list[str] = []        # screen text, one entry per cursor row move
        self._line: list[str] = []
        self.dialog_text: dict[str, list[str]] = {}   # title -> body lines drawn after it
        self._dialog: str | None = None

    @property
    def _alt(self) -> bool:
        return self._g1_alt if self._shifted else self._g0_alt

    def feed(self, text: str) -> list[str]:
        """Parse more console output; returns the titles that appeared in it."""
        text = self._carry + text
        self._carry = ""
        new: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "\x1b":
                if i + 1 >= n:
                    self._carry = text[i:]
                    break
                nxt = text[i + 1]
                if nxt == "[":
                    m = _CSI.match(text, i)
                    if m is None:
                        if n - i < 32:          # an escape split across reads
                            self._carry = text[i:]
                            break
                        i += 2
                        continue
                    if m.group(2) in "Hf":      # cursor positioning starts a new screen row
                        self._newline()
                    i = m.end()
                    continue
                if nxt in "()*+":
                    if i + 2 >= n:
                        self._carry = text[i:]
                        break
                    alt = text[i + 2] == "0"
                    if nxt == "(":
                        self._set_alt(g0=alt)
                    elif nxt == ")":
                        self._set_alt(g1=alt)
                    i += 3
                    continue
                i += 2                          # ESC 7, ESC 8, ESC =, ESC >, ESC M …
                continue
            if c == "\x0e":
                self._switch(True)
            elif c == "\x0f":
                self._switch(False)
            elif c in "\r\n":
                self._newline()
            elif c == "\x08" or c < " " and c != "\t":
                pass
            elif self._alt:
                self._alt_char(c, new)
            elif len(self._line) < MAX_LINE:   # a line without end must not grow without end
                self._plain.append(c)
                self._line.append(c)
            i += 1
        return new

    # charset bookkeeping: a title is decided when the alternate run after it starts
    def _set_alt(self, g0: bool | None = None, g1: bool | None = None) -> None:
        if g0 is not None:
            self._g0_alt = g0
        if g1 is not None:
            self._g1_alt = g1

    def _switch(self, shifted: bool) -> None:
        self._shifted = shifted

    def _alt_char(self, c: str, new: list[str]) -> None:
        if self._plain:
            text = " ".join("".join(self._plain).split())
            if text and self._last_alt.endswith("u") and c == "t":
                self.titles.append(text)
                del self.titles[:-MAX_TITLES]
                new.append(text)
                self._dialog = text
                if text not in self.dialog_text and len(self.dialog_text) >= MAX_TITLES:
                    self.dialog_text.pop(next(iter(self.dialog_text)))
                self.dialog_text.setdefault(text, [])
            self._plain = []
            self._last_alt = ""
        self._last_alt = self._last_alt[-8:] + c
        if len(self._line) < MAX_LINE:
            self._line.append(" ")

    def _newline(self) -> None:
        line = " ".join("".join(self._line).split())
        self._line = []
        if self._plain and not "".join(self._plain).strip():
            self._plain = []
        line = _SCREEN_STATUS.sub("", line).strip()
        if line:
            self.lines.append(line)
            del self.lines[:-400]
            if self._dialog is not None and len(self.dialog_text[self._dialog]) < 40:
                self.dialog_text[self._dialog].append(line)


def strip_console(text: str) -> list[str]:
    """The readable lines of a console capture (escape sequences and box drawing removed)."""
    c = Console()
    c.feed(text + "\n")
    return c.lines


# -- ttyS1: the installer's syslog ----------------------------------------------------------------

_SYSLOG = re.compile(r"^(?:\w{3} +\d+ \d\d:\d\d:\d\d )?(?P<tag>[^:\[\s]+)(?:\[\d+\])?: (?P<msg>.*)$")
_MENU = re.compile(r"Menu item '([^']+)' (selected|failed)")
_RETRIEVING = re.compile(r"DEBUG: retrieving (\S+)")
_URL_LINE = re.compile(r"^((?:https?|ftp)://\S+):$")
_WGET_ERROR = re.compile(r"ERROR (\d{3}): (.+?)\.?$")
_WGET_FAIL = re.compile(r"^wget: (.+)$")


class Syslog:
    """Incremental reader of the installer syslog: steps, failed steps, failed downloads."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._partial = ""
        self.steps: list[Step] = []
        self.failed_steps: list[str] = []
        self.failures: list[DownloadFailure] = []
        self.preseed_loaded = False
        self.poweroff = False
        self.lines: list[str] = []
        self._component: str | None = None
        self._url: str | None = None

    def feed(self, text: str) -> list[Step]:
        text = self._partial + text
        *complete, self._partial = text.split("\n")
        self._partial = self._partial[:MAX_LINE]
        new: list[Step] = []
        for raw in complete:
            line = raw.rstrip("\r")[:MAX_LINE]
            if not line.strip():
                continue
            self.lines.append(line)
            del self.lines[:-400]
            self._line(line, new)
        return new

    def _step(self, package: str, name: str, new: list[Step]) -> None:
        s = Step(package, name, self._clock())
        self.steps.append(s)
        del self.steps[:-MAX_STEPS]
        new.append(s)

    def _line(self, line: str, new: list[Step]) -> None:
        m = _SYSLOG.match(line)
        if not m:
            return
        tag, msg = m.group("tag"), m.group("msg")
        if tag == "preseed" and msg.startswith("successfully loaded preseed file"):
            self.preseed_loaded = True
            self._step("preseed", "Load the preseed answers", new)
        elif tag == "debconf" and msg.startswith("Setting debconf/language to "):
            self._step("language", f"Language set to {msg.rsplit(' ', 1)[-1]!r}", new)
        elif tag == "main-menu":
            mm = _MENU.search(msg)
            if mm and mm.group(2) == "selected":
                pkg = mm.group(1)
                self._step(pkg, STEP_NAMES.get(pkg, pkg), new)
            elif mm:
                self.failed_steps.append(mm.group(1))
                del self.failed_steps[:-MAX_STEPS]
        elif tag == "anna":
            self._anna(msg)
        elif "poweroff" in msg.lower() or "power off" in msg.lower():
            self.poweroff = True

    def _anna(self, msg: str) -> None:
        m = _RETRIEVING.search(msg)
        if m:
            self._component, self._url = m.group(1), None
            return
        m = _URL_LINE.match(msg.strip())
        if m:
            self._url = m.group(1)
            if self._component is None:      # no DEBUG line: take the name from the file
                self._component = self._url.rsplit("/", 1)[-1].split("_", 1)[0]
            return
        m = _WGET_ERROR.search(msg)
        if m and self._url:
            self.failures.append(DownloadFailure(self._component or "?", self._url,
                                                 m.group(1), m.group(2).strip()))
            del self.failures[:-MAX_STEPS]
            self._url = None
            return
        m = _WGET_FAIL.match(msg.strip())
        if m and self._url:
            self.failures.append(DownloadFailure(self._component or "?", self._url,
                                                 m.group(1).strip(), ""))
            del self.failures[:-MAX_STEPS]
            self._url = None


# -- both together ---------------------------------------------------------------------------

class Watch:
    """The installer's state as far as its serial ports tell; ``verdict`` says if it is stuck."""

    def __init__(self, clock=time.monotonic, mirror: str | None = None):
        self.clock = clock
        self.console = Console()
        self.syslog = Syslog(clock)
        self.mirror = mirror
        self.waiting: str | None = None       # title of a question dialog on screen
        self.waiting_since: float | None = None
        self.last_progress = clock()
        self._last_console_lines = 0
        self._last_title: str | None = None

    def feed(self, console: str = "", syslog: str = "") -> list[str]:
        """Feed new output from both ports; returns human-readable events (for INFO logging)."""
        events: list[str] = []
        now = self.clock()
        if console:
            for title in self.console.feed(console):
                if title.startswith(PRIORITY_MARKS):
                    if self.waiting != title:
                        self.waiting, self.waiting_since = title, now
                    events.append(f"dialog: {title}")
                else:
                    self.waiting = None
                    if title != self._last_title:
                        events.append(f"progress: {title}")
                self._last_title = title
            if len(self.console.lines) != self._last_console_lines:
                self._last_console_lines = len(self.console.lines)
                if self.waiting is None:
                    self.last_progress = now
        if syslog:
            for step in self.syslog.feed(syslog):
                events.append(f"step: {step.name}")
            if syslog.strip():
                if self.waiting is None:
                    self.last_progress = now
        return events

    def steps(self) -> list[str]:
        return [s.package for s in self.syslog.steps]

    def stopped(self) -> Verdict | None:
        """A verdict when a dialog is waiting for an answer (the run will not go on by itself)."""
        if self.waiting is None:
            return None
        title = self.waiting
        fails = list(self.syslog.failures)
        if fails:
            f = fails[-1]
            status = f"HTTP {f.status} {f.reason}".strip() if f.status.isdigit() else f.status
            cause = (f"installer stopped at '{title}': component {', '.join(x.component for x in fails)} "
                     f"could not be downloaded from mirror {f.host} ({status}, {f.url})")
            return Verdict(False, cause, title, fails)
        if self.syslog.failed_steps:
            step = self.syslog.failed_steps[-1]
            return Verdict(False, f"installer step '{STEP_NAMES.get(step, step)}' failed "
                                  f"and shows '{title}'", title)
        body = " ".join(self.console.dialog_text.get(title, [])[:6])
        return Verdict(False, f"installer is waiting at a question the preseed did not answer: "
                              f"'{title}'" + (f" — {body[:200]}" if body else ""), title)

    def stuck_question(self) -> str | None:
        return self.waiting.split("]", 1)[-1].strip() if self.waiting else None

    def tail(self, n: int = 15) -> list[str]:
        """The last installer syslog lines, else the last console lines, for error messages."""
        lines = self.syslog.lines[-n:] if self.syslog.lines else self.console.lines[-n:]
        return [_redact(x) for x in lines]

    def screen(self, n: int = 12) -> list[str]:
        if self.waiting:
            body = self.console.dialog_text.get(self.waiting) or []
            if body:
                return [_redact(x) for x in body[:n]]
        return [_redact(x) for x in self.console.lines[-n:]]


def _redact(line: str) -> str:
    # the preseed holds crypt hashes; never quote one back into an error or a log
    return re.sub(r"(password\S*\s+\S+\s+)\S+", r"\1<redacted>", line)


# -- driving a live machine ------------------------------------------------------------------------

class _Tail:
    """Read what a growing file gained since the last call."""

    def __init__(self, path: Path):
        self.path = path
        self.pos = 0

    def read(self) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read(READ_CHUNK)   # the rest on the next poll
        except FileNotFoundError:
            return ""
        self.pos += len(data)
        return data.decode("utf-8", "replace")


@dataclass
class Outcome:
    steps: list[str]
    seconds: float
    exit_code: int


def follow(machine, console_log: Path, syslog_log: Path, *, timeout: float, stall: float,
           settle: float = 8.0, poll: float = 0.5, logger: logging.Logger = log,
           clock=time.monotonic) -> Outcome:
    """Watch ``machine`` (a started QemuMachine) until the installer powers it off.

    Raises InstallerError on a dialog waiting for an answer (after ``settle`` seconds, so the
    syslog can name the cause; at once when a failed download is already known), on no progress
    for ``stall`` seconds, on ``timeout`` overall, and when the guest stops without the
    installer having finished.
    """
    w = Watch(clock)
    start = clock()
    con, sys_ = _Tail(console_log), _Tail(syslog_log)

    def pump() -> None:
        for event in w.feed(con.read(), sys_.read()):
            logger.info("installer: %s", event)

    while True:
        pump()
        now = clock()
        if not machine.running():
            time.sleep(0.2)
            pump()
            code = machine.returncode
            return _finished(w, machine, code, now - start)
        if w.waiting is not None:
            v = w.stopped()
            waited = now - (w.waiting_since or now)
            if v is not None and (v.failures or waited >= settle):
                raise _error(w, v.cause, _hint(v))
        if now - w.last_progress >= stall:
            raise _error(w, f"installer made no progress for {int(stall)} s (installer.stall)"
                            + (f"; last step: {w.syslog.steps[-1].name}" if w.syslog.steps else ""),
                         "raise installer.stall if the machine is just slow")
        if now - start >= timeout:
            raise _error(w, f"installer did not finish within {int(timeout)} s (installer.timeout)"
                            + (f"; last step: {w.syslog.steps[-1].name}" if w.syslog.steps else ""),
                         "raise installer.timeout if the machine is just slow")
        time.sleep(poll)


def _finished(w: Watch, machine, code: int | None, seconds: float) -> Outcome:
    steps = w.steps()
    reasons = [e.get("data", {}).get("reason") for e in getattr(machine, "events", lambda: [])()
               if e.get("event") == "SHUTDOWN"]
    if "finish-install" not in steps:
        v = w.stopped()
        cause = v.cause if v else (f"the installer machine stopped (exit code {code}"
                                   + (f", {reasons[-1]}" if reasons else "")
                                   + ") before the installer finished")
        raise _error(w, cause, None)
    if reasons and "guest-reset" in reasons:
        raise _error(w, "the installer rebooted instead of powering off "
                        "(debian-installer/exit/poweroff not honoured?)", None)
    return Outcome(steps, seconds, code or 0)


def _hint(v: Verdict) -> str:
    if v.failures:
        return ("point build.mirror at a complete Debian mirror: one that serves the installer's "
                ".udeb component files from its pool, not only the ordinary .deb packages")
    if v.title and "waiting at a question" in v.cause:
        return "answer it with installer.extra_preseed (a 'd-i question type value' line)"
    return "see the installer syslog lines above"


def _error(w: Watch, cause: str, hint: str | None) -> InstallerError:
    parts = [cause]
    screen = w.screen()
    if w.waiting and screen:
        parts.append("screen:")
        parts += [f"  {x}" for x in screen]
    tail = w.tail()
    if tail:
        parts.append("last installer log lines:")
        parts += [f"  {x}" for x in tail]
    err = InstallerError("\n".join(parts), hint=hint)
    err.cause = cause            # the one-line cause, for callers and tests
    err.steps = w.steps()
    return err

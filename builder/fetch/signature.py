"""OpenPGP checks with gpgv: a clearsigned file in, the signed text out (or SignatureError)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from builder.errors import MissingEnvironment, SignatureError
from builder.host import proc as hostproc
from builder.host.tools import require

log = logging.getLogger("ironforge.fetch")

KEYRING_DIR = Path("/usr/share/keyrings")
ARCHIVE_KEYRING = KEYRING_DIR / "debian-archive-keyring.gpg"
GPGV_TIMEOUT = 120


def debian_keyrings(directory: Path = KEYRING_DIR) -> tuple[Path, ...]:
    """debian-archive-keyring.gpg plus the per-release keyrings beside it (never removed-keys)."""
    rings = [directory / "debian-archive-keyring.gpg"]
    rings += sorted(p for p in directory.glob("debian-archive-*.gpg")
                    if "removed" not in p.name and p not in rings)
    present = tuple(p for p in rings if p.is_file())
    if not present:
        raise MissingEnvironment(f"no Debian archive keyring in {directory}",
                                 hint="install it: apt-get install debian-archive-keyring "
                                      "(or run: make setup)")
    return present


def verify_clearsigned(path: Path, keyrings: tuple[Path, ...] | list[Path], *, what: str,
                       timeout: float | None = None) -> str:
    """Check ``path``'s clearsignature against ``keyrings``; return only the signed text.

    Only gpgv's output is returned, so text outside the signed block can never be parsed as
    if it were signed.
    """
    gpgv = require("gpgv")
    for k in keyrings:
        if not Path(k).is_file():
            raise MissingEnvironment(f"keyring {k} does not exist",
                                     hint="install debian-archive-keyring (make setup)")
    # a private, empty home: no trustedkeys.kbx or options of the user can widen the key set
    with tempfile.TemporaryDirectory(prefix="ironforge-gpgv-") as home:
        cmd = [gpgv, "--homedir", home, "--status-fd", "2", "--output", "-"]
        for k in keyrings:
            cmd += ["--keyring", str(Path(k).resolve())]
        cmd.append(str(path))
        proc = hostproc.run(cmd, what=f"{what}: gpgv", timeout=timeout or GPGV_TIMEOUT, text=False, check=False,
                            timeout_error=SignatureError,
                            hint="gpgv checks a Release file in well under a second; a hang means a "
                                 "broken keyring or gpgv install (try: gpgv --version)")
    status = [ln[len("[GNUPG:] "):] for ln in proc.stderr.decode(errors="replace").splitlines()
              if ln.startswith("[GNUPG:] ")]
    words = {ln.split()[0] for ln in status if ln.split()}
    if proc.returncode != 0 or "VALIDSIG" not in words or "GOODSIG" not in words:
        reason = _reason(status, words)
        log.debug("gpgv said: %s", proc.stderr.decode(errors="replace"))
        raise SignatureError(f"{what}: signature check failed: {reason}",
                             hint="the file is not signed by a key in "
                                  f"{', '.join(str(k) for k in keyrings)}; the mirror may be "
                                  "broken or tampered with, or the keyring is out of date "
                                  "(apt-get install debian-archive-keyring)")
    return proc.stdout.decode("utf-8", errors="strict")


def _reason(status: list[str], words: set[str]) -> str:
    if "NODATA" in words:
        return "no signature found"
    if "BADSIG" in words:
        return "bad signature (the signed text was modified)"
    if "NO_PUBKEY" in words:
        key = next((ln.split()[1] for ln in status if ln.startswith("NO_PUBKEY")), "?")
        return f"signed by unknown key {key}"
    if "EXPKEYSIG" in words:
        return "signed by an expired key"
    if "REVKEYSIG" in words:
        return "signed by a revoked key"
    if "ERRSIG" in words:
        return "signature could not be checked"
    return "gpgv rejected it"

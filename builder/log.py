"""Logging set-up for the CLI: -q silences, -v explains; everything goes to stderr."""

from __future__ import annotations

import logging
import sys


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"  [{record.name.removeprefix('ironforge.')}] {msg}"
        return msg


def setup(verbose: int, quiet: bool) -> logging.Logger:
    root = logging.getLogger("ironforge")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    return root

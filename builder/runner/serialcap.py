"""A guest's serial port into a log file of bounded size.

A hostile or broken guest can print without end; QEMU's ``file`` chardev would write it all to
our disk. Instead QEMU connects the port to a unix socket we listen on, and a thread copies what
arrives into the log: up to ``cap`` bytes, then one line saying the rest was dropped. It keeps
reading (and discarding) after that, so the guest's console never blocks on a full socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

DEFAULT_CAP = 64 << 20     # a verification boot writes < 1 MiB; an installer's syslog a few MiB


def truncation_note(cap: int) -> bytes:
    return (f"\n[ironforge: serial log capped at {cap >> 20} MiB; the rest of the guest's output "
            "was dropped]\n").encode()


class SerialLog:
    """Listens on ``socket_path`` (QEMU connects with ``server=off``) and writes ``log_path``."""

    def __init__(self, log_path: Path, socket_path: Path, cap: int = DEFAULT_CAP):
        self.log_path = Path(log_path)
        self.socket_path = Path(socket_path)
        self.cap = cap
        self.written = 0
        self.dropped = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.socket_path))
        self._listener.listen(1)
        # created (empty) now, as QEMU's file chardev would: readers may look before any output
        self._out = open(self.log_path, "wb", buffering=0)
        self._thread = threading.Thread(target=self._copy, name=f"serial {self.log_path.name}",
                                        daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:          # closed before QEMU connected (it failed to start)
            self._out.close()
            return
        with conn, self._out:
            while True:
                try:
                    chunk = conn.recv(1 << 16)
                except OSError:
                    break
                if not chunk:
                    break
                room = self.cap - self.written
                if room > 0:
                    self._out.write(chunk[:room])
                    self.written += min(room, len(chunk))
                    if len(chunk) >= room:
                        self._out.write(truncation_note(self.cap))
                    chunk = chunk[room:]
                self.dropped += len(chunk)

    def join(self, timeout: float) -> bool:
        """Wait until everything QEMU sent is in the file (it closes the socket when it exits)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        self.join(timeout)
        with contextlib.suppress(OSError):
            self.socket_path.unlink()

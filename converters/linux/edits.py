"""A planned change to one guest file or one guest command: what the conversion report lists.

Planners are pure functions over file texts; the convert stage applies their edits in its one
writable launch and the dry run prints them. ``why`` is written for the person reading the report.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileEdit:
    path: str                  # guest path
    new: str | None            # new content; None removes the file
    why: str
    old: str | None = None     # previous content (None: the file did not exist)
    link: str | None = None    # make ``path`` a symlink to this target instead of a file

    @property
    def action(self) -> str:
        if self.link is not None:
            return "symlink"
        return "remove" if self.new is None else ("create" if self.old is None else "edit")

    def to_dict(self) -> dict:
        d = {"path": self.path, "action": self.action, "why": self.why}
        if self.link is not None:
            d["target"] = self.link
        return d


@dataclass(frozen=True)
class GuestRun:
    """A command run inside the guest (package removal, update-grub, update-initramfs)."""

    argv: tuple[str, ...]
    why: str
    limit: int = 1800

    def to_dict(self) -> dict:
        return {"command": " ".join(self.argv), "why": self.why}


def edit(files: dict[str, str | None], path: str, new: str, why: str) -> FileEdit | None:
    """An edit of ``path`` to ``new``, or None when it is already that."""
    old = files.get(path)
    if old == new:
        return None
    return FileEdit(path, new, why, old)

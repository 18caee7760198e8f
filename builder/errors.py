"""The one error hierarchy.

Every error carries a message for a person and an optional hint (what to do next).
Only the CLI prints errors and maps them to exit codes:

    0 ok, 1 build or verification failed, 2 bad recipe or usage, 3 missing environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class IronforgeError(Exception):
    """Base of every error ironforge reports to a person."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code}


class BuildError(IronforgeError):
    """A stage failed (exit 1)."""


class UndeclaredRead(BuildError):
    """A stage read a recipe key its StageDef.reads does not declare: a programming error that
    would give stale cache hits (exit 1)."""


class ToolTimeout(BuildError):
    """A host tool ran past its time limit and was killed (exit 1)."""


class ToolFailed(BuildError):
    """A host tool exited non-zero (exit 1). ``output`` holds the tail of what it printed."""

    def __init__(self, message: str, *, returncode: int, output: str = "", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.returncode = returncode
        self.output = output


class FetchError(BuildError):
    """A download or its verification failed."""


class SignatureError(FetchError):
    """A signature or a signed checksum did not verify."""


class ChecksumError(FetchError):
    """Downloaded bytes do not match the expected digest."""

    def __init__(self, what: str, algo: str, expected: str, actual: str, hint: str | None = None):
        super().__init__(f"{what}: {algo} mismatch: expected {expected}, got {actual}", hint)
        self.expected = expected
        self.actual = actual


class GuestfsError(BuildError):
    """libguestfs reported an error while editing an image."""


class UnsafeImageError(BuildError):
    """An input image was refused (hostile or malformed)."""


class InstallerError(BuildError):
    """An OS installer run failed or stopped."""


@dataclass
class BootFailure:
    """Evidence saved when a guest did not prove it booted."""

    reason: str
    serial_tail: list[str] = field(default_factory=list)
    serial_log: Path | None = None
    screenshot: Path | None = None


class VerifyError(BuildError):
    """A guest did not prove that it boots, or a check after boot failed."""

    def __init__(self, message: str, hint: str | None = None, failure: BootFailure | None = None):
        super().__init__(message, hint)
        self.failure = failure


class UsageError(IronforgeError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2


class NotImplementedYet(UsageError):
    """A command or recipe feature whose stage has not landed yet (exit 2)."""


@dataclass(frozen=True)
class RecipeProblem:
    """One mistake in a recipe: where, what was expected, what was found."""

    file: str
    key: str
    expected: str
    got: str
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        text = f"{where}: expected {self.expected}, got {self.got}"
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


class RecipeError(IronforgeError):
    """A recipe is malformed; holds every problem found, not just the first (exit 2)."""

    exit_code = 2

    def __init__(self, problems: list[RecipeProblem], hint: str | None = None):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in recipe"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems), hint)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["problems"] = [p.__dict__ for p in self.problems]
        return d


class MissingEnvironment(IronforgeError):
    """A host tool, package or device the build needs is missing (exit 3)."""

    exit_code = 3


class OutputBusy(IronforgeError):
    """Another ironforge process holds the output folder (a rebuild runs there) and the caller
    asked not to wait (exit 3: this run could not happen here now; nothing was built)."""

    exit_code = 3


class WindowsImageError(BuildError):
    """A Windows disk cannot be injected safely (not Windows, hibernated, dynamic disk, a
    malformed hive…); nothing was written (exit 1)."""


class VirtioWinError(UsageError):
    """The virtio-win source given is unreadable or holds no driver for this Windows (exit 2)."""


class RemoteCacheError(BuildError):
    """The remote stage cache (an OCI registry) failed or answered something unusable. The
    engine never lets it fail a build: it warns and builds locally (builder/cache/remote/)."""


class RemoteCacheCorrupt(RemoteCacheError):
    """What the remote cache served does not match its digest or is not a stage we can use."""

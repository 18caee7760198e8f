"""Placeholder until the CLI lands (replaced in the foundation commit)."""


def main() -> None:  # pragma: no cover
    raise SystemExit(2)

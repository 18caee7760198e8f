"""One module per stage, each defining ``STAGE = StageDef(...)``."""

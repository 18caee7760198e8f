"""Conversion stages (``STAGE = StageDef(...)`` each), run by the same engine as builds."""

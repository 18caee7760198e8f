"""Stages of the Windows family (see builder.pipeline)."""

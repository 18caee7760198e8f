"""ironforge: recipes in, boot-verified disk images out."""

__version__ = "0.1.0"

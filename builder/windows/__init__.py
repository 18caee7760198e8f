"""The Windows family: version facts, virtio-win reading, offline driver injection, stages.

Facts and decisions: ../shared/specs/windows.md. The injection module (``inject``) is shared
with the converters, so nothing here depends on a recipe.
"""

"""Linux guests: what inspection reads (``facts``) and the fix-ups that make a foreign guest
boot on KVM (``fixups`` orchestrates; ``devices``, ``console``, ``tools``, ``network`` each plan
one concern as text edits, so ``--dry-run`` and the ``convert`` stage share one planner)."""

"""Safe handling of untrusted disk images (probe before anything opens them)."""

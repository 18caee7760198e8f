"""Scheduled rebuilds: versioned outputs, what changed between versions, one rebuild per folder."""

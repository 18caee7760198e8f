"""Archive readers for untrusted inputs (OVA, container root filesystems): ours, bounded."""

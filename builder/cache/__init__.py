"""The content-addressed cache: downloads by digest, stage artifacts by cache key."""

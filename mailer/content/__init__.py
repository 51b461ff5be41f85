"""Articles and what a digest says: ingest, store, select."""

"""Which model version serves: reading it, training one that serves when done, atomic activation,
and the per-version HNSW indexes. May import search.indexing.progress and search's models."""

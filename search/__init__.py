"""Vectors in pgvector and everything that reads or writes them: indexing/ (jobs, batches, the COPY
writer, repair), serving/ (which version serves, activation, HNSW DDL), queries/ (similar items,
photo search, hybrid, weights, duplicates), admin/, and the views and JSON API.

May import config, catalog and ml; nothing below search imports it."""

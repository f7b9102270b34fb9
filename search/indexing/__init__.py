"""Writing vectors: reindex jobs split into batches, the model run over a batch, the binary COPY
upsert, and the periodic repair of lost messages. May import search.serving and search's models."""

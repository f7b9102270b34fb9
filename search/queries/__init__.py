"""Reading vectors for people: nearest products, similar items, photo search (the one query that
runs the model), photo + words, per-use weights, near-duplicates. May import search.serving and
search.indexing.progress; never writes."""

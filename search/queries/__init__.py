"""Reading vectors for people: nearest products, similar items, photo search (runs the model), photo +
words, per-use weights, near-duplicates, the crop. May import search.serving, indexing.progress; never writes."""

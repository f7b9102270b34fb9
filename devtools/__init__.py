"""Development tooling, not part of the running site: the `make run` demo and its process supervisor,
the embedded PostgreSQL's pg_trgm installer, and the pytest plugin. May import config only."""

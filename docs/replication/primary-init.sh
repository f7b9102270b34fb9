#!/usr/bin/env bash
# Runs once, when the compose `db` volume is first initialised (/docker-entrypoint-initdb.d): a role
# the optional `replica` service streams with, and the pg_hba.conf line that lets it. An existing
# volume needs the same two steps by hand (docs/scaling.md, "Read replicas").
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="${REPLICATION_PASSWORD:?}" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"

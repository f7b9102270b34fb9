#!/usr/bin/env bash
# The compose `replica` service (profile "replica"): a hot standby streaming from `db`. On its first
# start it copies the primary with pg_basebackup (-R: standby.signal and primary_conninfo; -C -S: a
# replication slot, so the primary keeps the WAL it has not received, bounded by the primary's
# max_slot_wal_keep_size); later starts resume streaming where it stopped.
set -euo pipefail
PGDATA=${PGDATA:-/var/lib/postgresql/data}
SLOT=${REPLICA_SLOT:-replica1}
PRIMARY_HOST=${PRIMARY_HOST:-db}
PRIMARY_PORT=${PRIMARY_PORT:-5432}
export PGPASSWORD="${REPLICATION_PASSWORD:?}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -q; do sleep 1; done
  # A slot left by an earlier copy of this replica (its volume was deleted) would refuse -C.
  psql "host=$PRIMARY_HOST port=$PRIMARY_PORT user=replicator dbname=postgres" -qAt \
    -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" || true
  until pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator -D "$PGDATA" -X stream -R -C -S "$SLOT" -c fast; do
    echo "pg_basebackup failed; retrying in 5 s" >&2
    rm -rf "${PGDATA:?}"/*
    sleep 5
  done
fi
chmod 0700 "$PGDATA"
exec postgres -D "$PGDATA" -c hot_standby=on -c hot_standby_feedback=on -c shared_buffers=1GB "$@"  # more -c settings: the service's command

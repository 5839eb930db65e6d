#!/usr/bin/env bash
# `drctl restore --replace` on a primary and a streaming standby: a bad
# DELETE undone in the primary's place, run after run. For each run, from
# the execution's journal: the whole replace, the window in which the
# primary's address takes no writes (the fence's start to the copy serving
# at the address), and the standby's rebuild.
# usage: bench/restore-replace.sh [MiB of data] [runs]
# Run as root (PostgreSQL and pgBackRest then run as postgres) or as postgres.
set -euo pipefail
MIB=${1:-100}; RUNS=${2:-3}
cd "$(dirname "$0")/.."
DRCTL=$(realpath "${DRCTL:-target/debug/drctl}")
PGBIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/drctl-bench-replace.XXXX); chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
P=$(free_port); S=$(free_port)
cleanup() {
  for d in "$WORK"/primary "$WORK"/standby "$WORK"/.drctl/backup/copies/*/data; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
as_pg "$PGBIN/initdb" -D "$WORK/primary" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$WORK/primary/postgresql.conf" <<EOF
port = $P
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
wal_level = replica
archive_mode = on
hot_standby = on
EOF
echo "host replication all 127.0.0.1/32 trust" | as_pg tee -a "$WORK/primary/pg_hba.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null
as_pg "$PGBIN/pg_basebackup" -D "$WORK/standby" -h 127.0.0.1 -p "$P" -U postgres -R -X stream --no-sync
echo "port = $S" | as_pg tee -a "$WORK/standby/postgresql.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/standby" -l "$WORK/standby.log" -w start >/dev/null
psql() { as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$P" -U postgres -d postgres -Atqc "$1"; }
psql "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS pad FROM generate_series(1, $((MIB * 3600))) g"
psql "CREATE TABLE orders (id int)"
cat > "$WORK/drctl.yaml" <<EOF
version: 1
zones: [ { name: az1, region: r }, { name: az2, region: r }, { name: az3, region: r } ]
objectives: { t: { rpo: 5s, rto: 2m, restore: { rpo: 1h, rto: 1h } } }
datastores:
  - name: db
    kind: postgres
    tier: t
    primary: { zone: az1, url: "postgres://postgres@127.0.0.1:$P/postgres" }
    replicas: [ { zone: az2, url: "postgres://postgres@127.0.0.1:$S/postgres" } ]
    backup: { tool: pgbackrest, repo: { zone: az3, path: $WORK/repo } }
EOF
cd "$WORK"
export DRCTL_STATE="sqlite://$WORK/state.db"
echo "size: $(psql "SELECT pg_size_pretty(pg_database_size('postgres'))"), machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(date -u +%F)"
secs() { python3 -c 'import sys,datetime as d; f=lambda s: d.datetime.fromisoformat(s.replace("Z","+00:00")); print("%.2f" % (f(sys.argv[2])-f(sys.argv[1])).total_seconds())' "$1" "$2"; }
for i in $(seq "$RUNS"); do
  # Each run starts from a backup of the primary as it is (after run 1,
  # the copy the previous run put in its place).
  "$DRCTL" backup db -f drctl.yaml >/dev/null
  sleep 2 # pgBackRest stamps the backup's end to the second, up to a second ahead
  psql "INSERT INTO orders SELECT generate_series(1, 100)"
  point=$(psql "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
  sleep 0.2
  psql "DELETE FROM orders"
  t0=$(date +%s.%N)
  out=$("$DRCTL" restore db --to "$point" --replace --reason bench --into run$i --yes -f drctl.yaml)
  id=$(echo "$out" | head -1)
  t1=$(date +%s.%N)
  back=$(psql "SELECT count(*) FROM orders")
  json=$("$DRCTL" show "$id" --output json -f drctl.yaml)
  at() { echo "$json" | python3 -c "import json,sys; s=[x for x in json.load(sys.stdin)['steps'] if x['id']=='db/$1'][0]; print(s['$2'])"; }
  printf "run %s: replace %.2f s; no writes at the address %s s (fence to serving); standby rebuilt in %s s; rows back %s/100\n" \
    "$i" "$(echo "$t1 - $t0" | bc)" "$(secs "$(at fence started_at)" "$(at takeover finished_at)")" \
    "$(secs "$(at standbys started_at)" "$(at standbys finished_at)")" "$back"
  psql "TRUNCATE orders"
done

#!/usr/bin/env bash
# A point-in-time restore with `drctl restore` against the same restore done
# by hand with pgBackRest alone (restore --type=time, start, wait for the
# promotion), from the same backup of the same cluster: drctl's overhead,
# and the recovery-point error drctl reports.
# usage: bench/restore-vs-pgbackrest.sh [MiB of data] [runs]
# Run as root (PostgreSQL and pgBackRest then run as postgres) or as postgres.
set -euo pipefail
MIB=${1:-200}; RUNS=${2:-3}
cd "$(dirname "$0")/.."
DRCTL=$(realpath "${DRCTL:-target/debug/drctl}")
PGBIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/drctl-bench-restore.XXXX); chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
PORT=$(free_port)
cleanup() {
  for d in "$WORK"/primary "$WORK"/manual "$WORK"/.drctl/backup/copies/*/data; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$WORK/primary" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$WORK/primary/postgresql.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
archive_mode = on
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null
psql() { as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atqc "$1"; }
psql "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS pad FROM generate_series(1, $((MIB * 3600))) g"
psql "CREATE TABLE orders (id int, at timestamptz DEFAULT clock_timestamp())"
cat > "$WORK/drctl.yaml" <<EOF
version: 1
zones: [ { name: az1, region: r }, { name: az2, region: r } ]
objectives: { t: { rpo: 5s, rto: 2m, restore: { rpo: 1h, rto: 1h } } }
datastores:
  - name: db
    kind: postgres
    tier: t
    primary: { zone: az1, url: "postgres://postgres@127.0.0.1:$PORT/postgres" }
    backup: { tool: pgbackrest, repo: { zone: az2, path: $WORK/repo } }
EOF
cd "$WORK"
export DRCTL_STATE="sqlite://$WORK/state.db"
"$DRCTL" backup db -f drctl.yaml | tail -1
CONF=$WORK/.drctl/backup/pgbackrest/db.conf
BYTES=$(psql "SELECT pg_database_size('postgres')")
echo "size: $(psql "SELECT pg_size_pretty(pg_database_size('postgres'))"), machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(date -u +%F)"
for i in $(seq "$RUNS"); do
  psql "INSERT INTO orders (id) VALUES ($i)"
  t0=$(date +%s.%N)
  out=$("$DRCTL" restore db --to latest --reason bench --into run$i -f drctl.yaml)
  t1=$(date +%s.%N)
  err=$(echo "$out" | sed -n 's/.*(\([0-9.-]*\) s before the point asked for).*/\1/p')
  as_pg "$PGBIN/pg_ctl" -D "$WORK/.drctl/backup/copies/run$i/data" -m immediate stop >/dev/null
  rm -rf "$WORK/.drctl/backup/copies/run$i"
  # The same by hand: the WAL closed and archived, restore, start, promoted.
  psql "INSERT INTO orders (id) VALUES ($i)"
  t2=$(date +%s.%N)
  # The target is now; a commit after it lets recovery stop there (with no
  # commit past the target, PostgreSQL ends recovery with "recovery ended
  # before configured recovery target was reached"), as drctl's own does.
  target=$(psql "SELECT clock_timestamp()")
  psql "SELECT pg_current_xact_id()" >/dev/null
  seg=$(psql "SELECT pg_walfile_name(pg_switch_wal() - 1)")
  until [ "$(psql "SELECT coalesce(last_archived_wal,'') >= '$seg' FROM pg_stat_archiver")" = t ]; do sleep 0.05; done
  as_pg pgbackrest --config="$CONF" --stanza=db restore --pg1-path="$WORK/manual" --type=time "--target=$target" \
    --target-action=promote --archive-mode=off
  mp=$(free_port)
  printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n" "$mp" "$WORK" | as_pg tee -a "$WORK/manual/postgresql.auto.conf" >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/manual" -l "$WORK/manual.log" -w start >/dev/null
  for _ in $(seq 2400); do
    [ "$(as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$mp" -U postgres -d postgres -Atqc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ] && break
    sleep 0.05
  done
  [ "$(as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$mp" -U postgres -d postgres -Atqc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ] \
    || { echo "the manual restore was not promoted within 2 minutes: $WORK/manual.log" >&2; tail -5 "$WORK/manual.log" >&2; exit 1; }
  t3=$(date +%s.%N)
  as_pg "$PGBIN/pg_ctl" -D "$WORK/manual" -m immediate stop >/dev/null; rm -rf "$WORK/manual"
  d=$(echo "$t1 - $t0" | bc); m=$(echo "$t3 - $t2" | bc)
  printf "run %s: drctl restore %.2f s (%.0f s/GB; recovery-point error %s s); pgbackrest alone %.2f s (%.0f s/GB)\n" \
    "$i" "$d" "$(echo "$d * 1000000000 / $BYTES" | bc -l)" "${err:-?}" "$m" "$(echo "$m * 1000000000 / $BYTES" | bc -l)"
done

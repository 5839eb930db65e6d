#!/usr/bin/env bash
# A small real estate on this machine for the tour in
# docs/guide/local-estate.md: a PostgreSQL primary (port 56432) with a streaming standby
# (56433), and moto's S3 API (56500) with two buckets and a few objects.
# Stop it with ./down.sh. Needs PostgreSQL's server binaries and python3.
#
# Nothing is written into the repository: the estate's data and logs go to
# $DRCTL_LOCAL_RUN (default /tmp/drctl-local-UID), and moto (the S3
# emulator, from PyPI) into a virtualenv at $DRCTL_MOTO_VENV (default
# ~/.cache/drctl/moto-venv), installed once, after saying so.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/paths.sh"
BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$BIN/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BIN)"; exit 2; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ -e "$RUN" ] && { echo "already up in $RUN ($HERE/down.sh first)"; exit 1; }
echo "starting PostgreSQL (primary and standby) and moto; data in $RUN"
mkdir -p "$RUN"; [ "$(id -u)" = 0 ] && chown postgres "$RUN"
as_pg "$BIN/initdb" -D "$RUN/primary" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$RUN/primary/postgresql.conf" <<CONF
port = 56432
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
wal_level = replica
max_wal_senders = 5
hot_standby = on
wal_receiver_status_interval = 1s
CONF
echo "host replication all 127.0.0.1/32 trust" >> "$RUN/primary/pg_hba.conf"
as_pg "$BIN/pg_ctl" -D "$RUN/primary" -l "$RUN/primary.log" -w start >/dev/null
as_pg "$BIN/pg_basebackup" -D "$RUN/standby" -h 127.0.0.1 -p 56432 -U postgres -R -X stream
echo "port = 56433" >> "$RUN/standby/postgresql.conf"
as_pg "$BIN/pg_ctl" -D "$RUN/standby" -l "$RUN/standby.log" -w start >/dev/null
as_pg "$BIN/psql" -h 127.0.0.1 -p 56432 -U postgres -qc "CREATE TABLE orders (id serial PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO orders DEFAULT VALUES;"

MOTO=${MOTO_SERVER:-}
if [ -z "$MOTO" ] && [ -x "$HERE/../../target/moto-venv/bin/moto_server" ]; then
  MOTO=$HERE/../../target/moto-venv/bin/moto_server   # the one the tests already use
fi
if [ -z "$MOTO" ]; then
  if [ ! -x "$VENV/bin/moto_server" ]; then
    echo "installing moto[server]==5.2.5 (an S3 emulator) from PyPI into $VENV (once; about a minute)"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'moto[server]==5.2.5'
  fi
  MOTO=$VENV/bin/moto_server
fi
nohup "$MOTO" -H 127.0.0.1 -p 56500 >"$RUN/moto.log" 2>&1 & echo $! > "$RUN/moto.pid"
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/56500) 2>/dev/null && break; sleep 0.2; done
kill -0 "$(cat "$RUN/moto.pid")" 2>/dev/null || { echo "moto did not start ($(tail -1 "$RUN/moto.log")); $HERE/down.sh cleans up" >&2; exit 1; }
python3 - <<'PY'
import urllib.request
def put(path, data=b"", ctype="application/octet-stream"):
    req = urllib.request.Request("http://127.0.0.1:56500/" + path, data=data, method="PUT", headers={"Content-Type": ctype})
    urllib.request.urlopen(req).read()
put("local-assets-az1"); put("local-assets-az2")
for i in range(20):
    put(f"local-assets-az1/img/{i:03}.png", bytes([i % 256]) * (1000 + i), "image/png")
PY
echo "up: postgres primary 127.0.0.1:56432, standby :56433; S3 (moto) http://127.0.0.1:56500"
echo "next (the tour in docs/guide/local-estate.md):"
echo "  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
echo "  export DRCTL_STATE=sqlite://$RUN/drctl-state.db"
echo "  drctl status -f $HERE/drctl.yaml"
echo "and when done: $HERE/down.sh"

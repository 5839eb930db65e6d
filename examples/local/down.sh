#!/usr/bin/env bash
# Stops what ./up.sh started and removes its data.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/paths.sh"
BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
for d in standby primary; do [ -d "$RUN/$d" ] && as_pg "$BIN/pg_ctl" -D "$RUN/$d" -m fast stop >/dev/null 2>&1; done
[ -f "$RUN/moto.pid" ] && kill "$(cat "$RUN/moto.pid")" 2>/dev/null
rm -rf "$RUN"
echo "down: $RUN removed (moto, if up.sh installed it, stays in $VENV)"

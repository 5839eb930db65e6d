#!/usr/bin/env bash
# `drctl bench erasure` over PostgreSQL and S3 (issue 27): a PostgreSQL
# primary with a streaming standby, and moto's S3 server with a versioned
# primary bucket and a versioned replica bucket. For each count of subjects
# given, the bench seeds them (rows in PostgreSQL; two objects of two
# versions in each bucket), records, erases and verifies each one, counts
# what is left, and cleans up. Everything started here is stopped on exit;
# each run is bounded by TIMEOUT seconds (default 3600).
#
# S3=lab serves the buckets from the lab's S3 endpoint instead (drctl's own
# versioned S3 server over a folder: cargo build -p drctl-lab --example
# s3_endpoint). moto copies every key of a bucket on each version listing
# and does not give the memory back: past a few hundred subjects (a
# thousand objects per bucket) it slows to a crawl and grows by gigabytes.
# usage: [S3=moto|lab] bench/erasure.sh [subjects ...]   (default: 1000 10000)
# Run as root (PostgreSQL then runs as postgres) or as postgres.
set -euo pipefail
COUNTS=("${@:-1000}"); [ $# -eq 0 ] && COUNTS=(1000 10000)
cd "$(dirname "$0")/.."
DRCTL=$(realpath "${DRCTL:-target/debug/drctl}")
[ -x "$DRCTL" ] || { echo "build drctl first (cargo build -p drctl) or set DRCTL"; exit 2; }
PGBIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
MOTO=${MOTO_SERVER:-target/moto-venv/bin/moto_server}
[ "${S3:-moto}" = lab ] || [ -x "$MOTO" ] || { python3 -m venv target/moto-venv && target/moto-venv/bin/pip install -q 'moto[server]==5.2.5'; MOTO=target/moto-venv/bin/moto_server; }
PY=$(realpath -m "$(dirname "$MOTO")/python")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/drctl-bench-erasure.XXXX); chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
P=$(free_port); S=$(free_port); M=$(free_port); MOTO_PID=
cleanup() {
  [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
  for d in "$WORK"/primary "$WORK"/standby; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

as_pg "$PGBIN/initdb" -D "$WORK/primary" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$WORK/primary/postgresql.conf" <<EOF
port = $P
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
wal_level = replica
hot_standby = on
EOF
echo "host replication all 127.0.0.1/32 trust" | as_pg tee -a "$WORK/primary/pg_hba.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null
as_pg "$PGBIN/pg_basebackup" -D "$WORK/standby" -h 127.0.0.1 -p "$P" -U postgres -R -X stream --no-sync
echo "port = $S" | as_pg tee -a "$WORK/standby/postgresql.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/standby" -l "$WORK/standby.log" -w start >/dev/null

if [ "${S3:-moto}" = lab ]; then
  LAB=$(realpath "${LAB_S3:-target/debug/examples/s3_endpoint}")
  [ -x "$LAB" ] || { echo "build the lab's endpoint first (cargo build -p drctl-lab --example s3_endpoint) or set LAB_S3"; exit 2; }
  "$LAB" "$WORK/s3" bench-az1 bench-az2 > "$WORK/s3.url" & MOTO_PID=$!
  for _ in $(seq 300); do [ -s "$WORK/s3.url" ] && break; sleep 0.1; done
  EP=$(head -1 "$WORK/s3.url")
  export AWS_ACCESS_KEY_ID=drctl-lab AWS_SECRET_ACCESS_KEY=drctl-lab-secret AWS_REGION=us-east-1
  S3_IS="the lab's S3 endpoint (versioned buckets over a folder)"
else
  "$MOTO" -H 127.0.0.1 -p "$M" >/dev/null 2>&1 & MOTO_PID=$!
  EP=http://127.0.0.1:$M
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  for _ in $(seq 300); do curl -s "$EP" >/dev/null && break; sleep 0.1; done
  "$PY" - "$EP" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
for b in ("bench-az1", "bench-az2"):
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
PY
  S3_IS="moto $("$PY" -c 'import moto; print(moto.__version__)')"
fi

cat > "$WORK/drctl.yaml" <<EOF
version: 1
zones: [ { name: az1, region: us-east-1 }, { name: az2, region: us-east-1 } ]
objectives: { t: { rpo: 5s, rto: 2m } }
datastores:
  - name: db
    kind: postgres
    tier: t
    primary: { zone: az1, url: "postgres://postgres@127.0.0.1:$P/postgres" }
    replicas: [ { zone: az2, url: "postgres://postgres@127.0.0.1:$S/postgres" } ]
  - name: files
    kind: s3
    tier: t
    endpoint: "$EP"
    primary: { zone: az1, bucket: bench-az1 }
    replicas: [ { zone: az2, bucket: bench-az2 } ]
EOF
cd "$WORK"
echo "S3: $S3_IS; drctl: $DRCTL ($(case "$DRCTL" in *release*) echo release;; *) echo debug;; esac) build); machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
for n in "${COUNTS[@]}"; do
  t0=$(date +%s)
  timeout "${TIMEOUT:-3600}" "$DRCTL" bench erasure --subjects "$n" -f drctl.yaml
  echo "  ($n subjects: $(( $(date +%s) - t0 )) s in all, seeding included; load after $(cut -d' ' -f1-3 /proc/loadavg))"
done

#!/usr/bin/env bash
# drctl replicate --once vs rclone sync, between buckets on moto's S3
# server: the same endpoint (both use server-side copy) and two endpoints
# (both stream GET -> PUT). Prints wall time and peak memory of each.
# usage: bench/replicate-vs-rclone.sh [small objects] [large objects] [MiB per large object]
set -euo pipefail
SMALL=${1:-2000}; LARGE=${2:-10}; MIB=${3:-50}
cd "$(dirname "$0")/.."
command -v rclone >/dev/null || { echo "rclone is needed: apt-get install rclone"; exit 2; }
# Two S3 endpoints: moto's server twice (the default), or any two given as
# S3_A and S3_B (e.g. the lab's, a fast native server:
#   drctl lab up --detach; S3_A=http://127.0.1.2:24390 S3_B=http://127.0.2.2:24390 \
#   KEY=drctl-lab SECRET=drctl-lab-secret REGION=lab bench/replicate-vs-rclone.sh).
KEY=${KEY:-testing}; SECRET=${SECRET:-testing}; REGION=${REGION:-us-east-1}
cargo build --release -q
DRCTL=$PWD/target/release/drctl
WORK=$(mktemp -d); PA=; PB=; trap 'kill $PA $PB 2>/dev/null; rm -rf "$WORK"' EXIT
if [ -z "${S3_A:-}" ]; then
  MOTO=${MOTO_SERVER:-target/moto-venv/bin/moto_server}
  [ -x "$MOTO" ] || { python3 -m venv target/moto-venv && target/moto-venv/bin/pip install -q 'moto[server]==5.2.5'; }
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  pa=$(free_port); pb=$(free_port)
  "$MOTO" -H 127.0.0.1 -p "$pa" >/dev/null 2>&1 & PA=$!
  "$MOTO" -H 127.0.0.1 -p "$pb" >/dev/null 2>&1 & PB=$!
  sleep 3
  S3_A=http://127.0.0.1:$pa; S3_B=http://127.0.0.1:$pb
fi
export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_REGION=$REGION
for r in A B; do
  ep=$([ $r = A ] && echo "$S3_A" || echo "$S3_B")
  export RCLONE_CONFIG_${r}_TYPE=s3 RCLONE_CONFIG_${r}_PROVIDER=Other RCLONE_CONFIG_${r}_ENDPOINT="$ep" \
         RCLONE_CONFIG_${r}_ACCESS_KEY_ID=$KEY RCLONE_CONFIG_${r}_SECRET_ACCESS_KEY=$SECRET RCLONE_CONFIG_${r}_REGION=$REGION RCLONE_CONFIG_${r}_LIST_VERSION=2
done
# rclone (Go) refuses the machine's CA bundle variable against http endpoints.
rc() { env -u AWS_CA_BUNDLE rclone --retries 1 -q "$@" 2>/dev/null; }

mkdir -p "$WORK/data/small" "$WORK/data/large"
python3 - "$WORK/data" "$SMALL" "$LARGE" "$MIB" <<'PY'
import os, sys, random
d, small, large, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(1)
for i in range(small):
    open(f"{d}/small/{i:05}.json", "wb").write(os.urandom(r.randint(500, 4000)))
for i in range(large):
    open(f"{d}/large/{i:02}.bin", "wb").write(os.urandom(mib << 20))
PY
rc mkdir A:bench-src
rc copy "$WORK/data" A:bench-src --transfers 8 -q
echo "source: $SMALL small objects, $LARGE x $MIB MiB ($(du -sh "$WORK/data" | cut -f1))"

topology() { # $1 = replica endpoint, $2 = replica bucket
  cat > "$WORK/drctl.yaml" <<YAML
version: 1
zones: [ { name: z1, region: us-east-1 }, { name: z2, region: us-east-1 } ]
datastores:
  - name: data
    kind: s3
    primary: { zone: z1, bucket: bench-src, endpoint: "$S3_A" }
    replicas: [ { zone: z2, bucket: $2, endpoint: "$1" } ]
    replication: { by: drctl, every: 1m, concurrency: 16 }
YAML
}
measure() { /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }; read -r secs kib < "$WORK/t"; echo "$secs s, peak $((kib / 1024)) MiB"; }

printf "%-16s %-30s %-30s %-30s\n" "scenario" "drctl replicate --once" "rclone sync (default)" "rclone sync --transfers 16"
for scenario in same-endpoint cross-endpoint; do
  if [ $scenario = same-endpoint ]; then R=A; EP="$S3_A"; else R=B; EP="$S3_B"; fi
  rc mkdir $R:d-$scenario; rc mkdir $R:r1-$scenario; rc mkdir $R:r2-$scenario
  topology "$EP" "d-$scenario"
  d=$(cd "$WORK" && measure "$DRCTL" replicate --once -f drctl.yaml --state "sqlite://$WORK/state-$scenario.db")
  r1=$(measure env -u AWS_CA_BUNDLE rclone -q sync A:bench-src $R:r1-$scenario)
  r2=$(measure env -u AWS_CA_BUNDLE rclone -q sync A:bench-src $R:r2-$scenario --transfers 16 --checkers 16)
  printf "%-16s %-30s %-30s %-30s\n" "$scenario" "$d" "$r1" "$r2"
done
# Then an incremental pass with deletes: a tenth of the small objects
# deleted on the source and a twentieth rewritten; both tools delete what
# the source no longer has (rclone sync does; drctl's deletes: replicate).
python3 - "$WORK/data" "$SMALL" <<'PY'
import os, sys
d, small = sys.argv[1], int(sys.argv[2])
for i in range(0, small, 10):
    os.remove(f"{d}/small/{i:05}.json")
for i in range(5, small, 20):
    open(f"{d}/small/{i:05}.json", "wb").write(os.urandom(1000))
PY
rc sync "$WORK/data" A:bench-src --transfers 8 -q
printf "%-16s %-30s %-30s %-30s\n" "then, deletes" "drctl replicate --once" "rclone sync (default)" "rclone sync --transfers 16"
for scenario in same-endpoint cross-endpoint; do
  if [ $scenario = same-endpoint ]; then R=A; EP="$S3_A"; else R=B; EP="$S3_B"; fi
  topology "$EP" "d-$scenario"
  d=$(cd "$WORK" && measure "$DRCTL" replicate --once -f drctl.yaml --state "sqlite://$WORK/state-$scenario.db")
  r1=$(measure env -u AWS_CA_BUNDLE rclone -q sync A:bench-src $R:r1-$scenario)
  r2=$(measure env -u AWS_CA_BUNDLE rclone -q sync A:bench-src $R:r2-$scenario --transfers 16 --checkers 16)
  printf "%-16s %-30s %-30s %-30s\n" "$scenario" "$d" "$r1" "$r2"
  if left=$(rc lsf -R --files-only $R:d-$scenario | wc -l) && want=$(rc lsf -R --files-only A:bench-src | wc -l); then
    [ "$left" = "$want" ] || { echo "drctl left $left objects, the source has $want"; exit 1; }
  else
    echo "  (objects not counted: rclone could not list the buckets on this endpoint)"
  fi
done

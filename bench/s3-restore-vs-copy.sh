#!/usr/bin/env bash
# S3 point-in-time restore against a plain copy of the same objects, on
# moto's S3 server: OBJECTS keys written (version 1), the moment noted, then
# half of them overwritten and a tenth more created (version 2). Then:
#   - `drctl restore --to MOMENT --into ...`: each key's version at the
#     moment copied into a new bucket (server-side copies of old versions);
#   - a plain copy: `drctl replicate --once` of the same number of current
#     objects into an empty bucket (server-side copies of current versions).
# Same endpoint, same copier, same concurrency: the difference is what
# finding the right version costs.
# usage: bench/s3-restore-vs-copy.sh [objects] [runs]
set -euo pipefail
OBJECTS=${1:-2000}; RUNS=${2:-3}
cd "$(dirname "$0")/.."
DRCTL=$(realpath "${DRCTL:-target/release/drctl}")
[ -x "$DRCTL" ] || { echo "build drctl first (cargo build --release) or set DRCTL"; exit 2; }
MOTO=${MOTO_SERVER:-target/moto-venv/bin/moto_server}
[ -x "$MOTO" ] || { python3 -m venv target/moto-venv && target/moto-venv/bin/pip install -q 'moto[server]==5.2.5'; }
PY=$(realpath "$(dirname "$MOTO")/python")
WORK=$(mktemp -d); PID=
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MOTO" -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 & PID=$!
EP=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
for _ in $(seq 100); do curl -s "$EP" >/dev/null && break; sleep 0.1; done
MOMENT=$("$PY" - "$EP" "$OBJECTS" <<'PY'
import sys, time, datetime, boto3, os
from concurrent.futures import ThreadPoolExecutor
ep, n = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=ep)
s3.create_bucket(Bucket="bench-src")
s3.put_bucket_versioning(Bucket="bench-src", VersioningConfiguration={"Status": "Enabled"})
def put(k, body): s3.put_object(Bucket="bench-src", Key=k, Body=body)
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda i: put(f"obj/{i:06}", os.urandom(2000)), range(n)))
time.sleep(1.1)   # S3 keeps times to the second
moment = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
time.sleep(1.1)
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda i: put(f"obj/{i:06}", b"encrypted by ransomware"), range(0, n, 2)))
    list(ex.map(lambda i: put(f"new/{i:06}", b"dropped by ransomware"), range(n // 10)))
print(moment)
PY
)
cat > "$WORK/drctl.yaml" <<YAML
version: 1
zones: [ { name: z1, region: us-east-1 }, { name: z2, region: us-east-1 } ]
objectives: { t: { rpo: 1m, rto: 1h, restore: { rpo: 1h, rto: 1h } } }
datastores:
  - name: data
    kind: s3
    tier: t
    primary: { zone: z1, bucket: bench-src, endpoint: "$EP" }
    replicas: [ { zone: z2, bucket: bench-copy, endpoint: "$EP" } ]
    replication: { by: drctl, every: 1m, concurrency: 16 }
    backup: { versions: 35d }
YAML
echo "bucket: $OBJECTS keys at the moment, $((OBJECTS / 2)) overwritten and $((OBJECTS / 10)) created since; machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(date -u +%F)"
cd "$WORK"
for i in $(seq "$RUNS"); do
  t0=$(date +%s.%N)
  "$DRCTL" restore data --to "$MOMENT" --into "bench-restored-$i" --reason bench -f drctl.yaml --state "sqlite://$WORK/state.db" >/dev/null
  t1=$(date +%s.%N)
  "$PY" -c "import boto3,sys; boto3.client('s3', endpoint_url='$EP').create_bucket(Bucket='bench-copy')" 2>/dev/null || true
  "$PY" -c "
import boto3; s3 = boto3.client('s3', endpoint_url='$EP')
for page in s3.get_paginator('list_objects_v2').paginate(Bucket='bench-copy'):
    for o in page.get('Contents', []): s3.delete_object(Bucket='bench-copy', Key=o['Key'])"
  t2=$(date +%s.%N)
  "$DRCTL" replicate --once -f drctl.yaml --state "sqlite://$WORK/copy-$i.db" >/dev/null
  t3=$(date +%s.%N)
  r=$(echo "$t1 - $t0" | bc); c=$(echo "$t3 - $t2" | bc)
  printf "run %s: restore %.2f s (%.0f keys/s); plain copy of %s objects %.2f s (%.0f objects/s)\n" \
    "$i" "$r" "$(echo "$OBJECTS / $r" | bc -l)" "$((OBJECTS + OBJECTS / 10))" "$c" "$(echo "($OBJECTS + $OBJECTS / 10) / $c" | bc -l)"
done

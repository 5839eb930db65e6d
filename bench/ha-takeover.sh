#!/usr/bin/env bash
# Measures SIGKILL of the leading controller -> another leads (docs/guide/ha-etcd.md),
# with the default 10 s lease. Needs a running etcd cluster:
#   bench/ha-takeover.sh TOPOLOGY ETCD_URL   (e.g. examples/saas/drctl.yaml etcd://127.0.0.1:2379)
set -u
BIN=${DRCTL:-$(dirname "$0")/../target/release/drctl}
BIN=$(realpath "$BIN")
TOPO=$(realpath "$1")
STATE=$2/takeover$RANDOM
cd "$(dirname "$TOPO")"
$BIN --state $STATE serve -f "$TOPO" --id a --listen 127.0.0.1:18081 --sample-every 1s >/tmp/ta.log 2>&1 &
A=$!
until curl -s 127.0.0.1:18081/api/v1/leader | grep -q '"leading":true'; do sleep 0.1; done
$BIN --state $STATE serve -f "$TOPO" --id b --listen 127.0.0.1:18082 --sample-every 1s >/tmp/tb.log 2>&1 &
B=$!
until curl -s 127.0.0.1:18082/api/v1/leader | grep -q '"leader":"a"'; do sleep 0.1; done
sleep 2
t0=$(date +%s.%N); kill -9 $A
until curl -s 127.0.0.1:18082/api/v1/leader | grep -q '"leading":true'; do sleep 0.05; done
t1=$(date +%s.%N)
echo "takeover: $(echo "$t1 - $t0" | bc) s"
kill $B; wait $B 2>/dev/null

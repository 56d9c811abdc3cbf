#!/bin/bash
# Measures a takeover of one node of a three-node cluster while messages
# cross between the nodes: `bench chat` across the nodes (every pair's users
# homed on different nodes), and a `serve --takeover` of node 2 part way
# through. Prints the bench's verdict and latencies, each other node's
# forwards that waited out their timeout, and the handover's pause
# (docs/BENCHMARKS.md, "A takeover in a cluster").
#
#   scripts/cluster-takeover.sh
#   BIN=/path/to/other/switchboard scripts/cluster-takeover.sh
#
# Environment: BIN (bin/switchboard), PAIRS (10), RATE (50 msg/s),
# DURATION (15s), AT (5: seconds after the bench starts), OUT
# (/tmp/switchboard-cluster-takeover: data folders and logs, emptied first).
# Loopback only, ports 17071-17073, 16271-16273, 14271-14273 and
# 19071-19073; it stops what it started.
set -u
BIN=${BIN:-bin/switchboard}
PAIRS=${PAIRS:-10}
RATE=${RATE:-50}
DURATION=${DURATION:-15s}
AT=${AT:-5}
OUT=${OUT:-/tmp/switchboard-cluster-takeover}
rm -rf "$OUT"
mkdir -p "$OUT"
NODES=1=127.0.0.1:17071/127.0.0.1:16271/127.0.0.1:14271,2=127.0.0.1:17072/127.0.0.1:16272/127.0.0.1:14272,3=127.0.0.1:17073/127.0.0.1:16273/127.0.0.1:14273
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap stop EXIT
start() { # start NODE [extra flags]
	"$BIN" serve --data "$OUT/n$1" --listen "127.0.0.1:1707$1" --metrics "127.0.0.1:1907$1" \
		--cluster-name local --cluster-node "$1" --cluster-nodes "$NODES" "${@:2}" >>"$OUT/log.n$1" 2>&1 &
	PIDS+=($!)
}
ready() { for _ in $(seq 200); do curl -sf "127.0.0.1:1907$1/readyz" >/dev/null && return; sleep 0.05; done; echo "node $1 not ready" >&2; exit 1; }

start 1
for _ in $(seq 200); do [ -f "$OUT/n1/keys" ] && [ -f "$OUT/n1/noise-keys" ] && break; sleep 0.05; done
for n in 2 3; do mkdir -p "$OUT/n$n" && cp -p "$OUT/n1/keys" "$OUT/n1/noise-keys" "$OUT/n$n/"; done
start 2
start 3
for n in 1 2 3; do ready "$n"; done
"$BIN" bench chat --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" --cluster-nodes 3 --cross 1 \
	--addr 127.0.0.1:17071,127.0.0.1:17072,127.0.0.1:17073 \
	--metrics 127.0.0.1:19071,127.0.0.1:19072,127.0.0.1:19073 \
	--keys "$OUT/n1/keys" --out - >"$OUT/bench.out" 2>&1 &
BENCH=$!
sleep "$AT"
start 2 --takeover
wait "$BENCH"
for n in 1 3; do
	echo "node $n: $(curl -s "127.0.0.1:1907$n/metrics" | grep '^switchboard_forward_timeouts_total')"
done
grep -E "switchboard bench|refused|send → ack|latency|^(PASS|FAIL)" "$OUT/bench.out"
grep -h "handover: 4/5" "$OUT/log.n2"

#!/bin/bash
# Measures a takeover under load: a phone-regime run against one `serve`,
# with a `serve --takeover` started part way through, next to the same run
# without one, and to a plain restart (SIGTERM, whose GOAWAYs spread the
# reconnects, then a new `serve`). Prints the handover's phases from both
# processes' logs, the bench's latency lines and connection closes for each
# run, and for the restart how long until every client was back and the
# most logins in one second (docs/BENCHMARKS.md, "Handover").
#
#   scripts/takeover.sh                       # 9,000 pairs (18,000 connections), plain
#   PAIRS=2000 NOISE=ik scripts/takeover.sh   # over Noise IK
#
# Environment: BIN (bin/switchboard), PAIRS (9000), RATE (1000 msg/s),
# DURATION (20s of traffic), AT (seconds after the bench starts at which
# the successor starts: after the logins, 12), NOISE ("" or ik), OUT
# (/tmp/switchboard-takeover), RUNS (baseline takeover restart), BENCH_ARGS
# (more bench flags). Loopback only; it stops what it started. The bench
# retries a failed login --retries times (a load tool's limit, not a
# client's): the script raises it to 1000, so that no client of the
# restart gives up while the server is down.
set -euo pipefail
BIN=${BIN:-bin/switchboard}
PAIRS=${PAIRS:-9000}
RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
AT=${AT:-12}
NOISE=${NOISE:-}
OUT=${OUT:-/tmp/switchboard-takeover}
ADDR=127.0.0.1:7600
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

waitfor() { # file pattern seconds
	for _ in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "timed out waiting for '$2' in $1" >&2
	return 1
}

run() { # label how(none|takeover|restart)
	local dir=$OUT/$1 data=$OUT/$1/data
	rm -rf "$dir"
	mkdir -p "$data"
	"$BIN" serve --data "$data" --listen $ADDR --metrics= --log info 2>"$dir/old.log" &
	local old=$!
	pids+=($old)
	waitfor "$dir/old.log" "switchboard serving" 30
	local noise=()
	[ -n "$NOISE" ] && noise=(--noise "$NOISE")
	"$BIN" bench phone --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" --connect-rate 5000 \
		--retries 1000 --addr $ADDR --metrics - --keys "$data/keys" "${noise[@]}" ${BENCH_ARGS:-} --out "$dir/report" >"$dir/bench.txt" 2>&1 &
	local b=$!
	pids+=($b)
	local serving=$old
	case $2 in
	takeover)
		sleep "$AT"
		"$BIN" serve --data "$data" --listen $ADDR --metrics= --log info --takeover 2>"$dir/new.log" &
		serving=$!
		pids+=($serving)
		wait $old && echo "$1: the old process exited 0" || echo "$1: the old process exited $?"
		;;
	restart)
		sleep "$AT"
		kill -TERM $old
		wait $old || true
		"$BIN" serve --data "$data" --listen $ADDR --metrics= --log info 2>"$dir/new.log" &
		serving=$!
		pids+=($serving)
		;;
	esac
	wait $b || echo "$1: bench exited $?"
	kill $serving
	wait $serving || true
	echo "== $1"
	grep -hE "handover:" "$dir/old.log" "$dir/new.log" 2>/dev/null | sed -E 's/^time=[^ ]+ level=[A-Z]+ //' || true
	grep -E "latency  |send → deliver|send → ack|lost  |receipts missing|FAIL" "$dir/bench.txt" || true
	python3 - "$dir/report/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("  connections closed by the server:", r.get("closes") or "none")
tl = r["timeline"]
full = max(s["conns"] for s in tl)
low = min(range(len(tl)), key=lambda i: tl[i]["conns"])
if tl[low]["conns"] < full:
    back = next((i for i in range(low, len(tl)) if tl[i]["conns"] >= full), None)
    drop = next(i for i in range(len(tl)) if tl[i]["conns"] < full)
    peak = max(tl[i]["conns"] - tl[i - 1]["conns"] for i in range(drop + 1, len(tl)))
    print(f"  connections: {full} → {tl[low]['conns']} at {drop + 1}–{low + 1} s; all back {'after %d s' % (back - drop) if back is not None else 'never'}; peak logins {peak}/s")
PY
}

for r in ${RUNS:-baseline takeover restart}; do
	case $r in
	baseline) run baseline none ;;
	*) run "$r" "$r" ;;
	esac
done

#!/usr/bin/env bash
# Runs the one-host cluster benchmark of docs/BENCHMARKS.md, "A million
# connections on one small host": `make million`. It starts NODES `serve`
# processes as one cluster over NATS_SERVERS NATS servers, waits until every
# node is ready and sees every peer, then runs `switchboard bench phone`
# against them: CONNS logged-in connections (each user on its home node,
# spread over worker processes on their own 127.0.0.x source addresses),
# held idle for HOLD, then 1:1 traffic at RATE msg/s for DURATION between
# pairs of which a share CROSS have their two users on different nodes, every
# message checked delivered once and in order. It reads memory (node,
# generator and NATS RSS; the kernel's slab and TCP pages) before the run, in
# the hold and in the traffic, and prints a summary. Every process it starts
# is stopped by PID on exit, and its data folder is removed; the bench report
# and the logs stay in OUT.
#
# Parameters (environment; `make million NODES=3 CONNS=6000` works too):
#   NODES         cluster nodes (default 53: ~18,900 connections each for a
#                 million, under a process's 20,000 open files)
#   CONNS         connections, even (default 1000000)
#   RATE          1:1 messages per second in all, after the hold (default 1000:
#                 53 idle nodes already take ~1.3 of 2 cores, docs/BENCHMARKS.md)
#   DURATION      how long the traffic lasts (default 60s)
#   HOLD          how long the connections stay idle first (default 60s)
#   CONNECT_RATE  logins per second in all (default 3000)
#   CROSS         share of pairs whose users are homed on different nodes
#                 (default 1 - 1/NODES: what random pairs would have)
#   NATS_SERVERS  NATS servers, the nodes their clients (default 3); 0: every
#                 node embeds its own, routed to every other (node i's routes on
#                 PORT_BASE+300+i, its NATS clients on PORT_BASE+600+i)
#   DATA          scratch folder, created and removed by this run; it must not
#                 exist (default /tmp/switchboard-million)
#   OUT           report and logs (default bench-results/million-<time>)
#   BIN           the switchboard binary (default bin/switchboard)
#   NATS_BIN      a nats-server binary; default: built from the version go.mod
#                 pins (go build github.com/nats-io/nats-server/v2)
#   PORT_BASE     node i listens on PORT_BASE+i, its admin on PORT_BASE+100+i,
#                 NATS server k on PORT_BASE+400+k (routes PORT_BASE+500+k)
#                 (default 17000)
#   NODE_PROCS    GOMAXPROCS of each node (default 1: 53 nodes share 2 cores)
#   HEARTBEAT     each node's cluster heartbeat (default 1s: 53 nodes at the
#                 250ms default spend about a core hearing one another)
#   DOWN_AFTER    how long a node may go unheard before it is down (default 4s)
#   READY_TIMEOUT seconds to wait for the cluster to form (default 300)
#   PPROF         1: node i also serves /debug/pprof/ on PORT_BASE+200+i
set -euo pipefail

NODES=${NODES:-53}
CONNS=${CONNS:-1000000}
RATE=${RATE:-1000}
DURATION=${DURATION:-60s}
HOLD=${HOLD:-60s}
CONNECT_RATE=${CONNECT_RATE:-3000}
CROSS=${CROSS:-$(awk -v n="$NODES" 'BEGIN { printf "%.4f", (n > 1) ? 1 - 1 / n : 0 }')}
NATS_SERVERS=${NATS_SERVERS:-3}
DATA=${DATA:-/tmp/switchboard-million}
OUT=${OUT:-bench-results/million-$(date +%Y%m%d-%H%M%S)}
BIN=${BIN:-bin/switchboard}
NATS_BIN=${NATS_BIN:-}
PORT_BASE=${PORT_BASE:-17000}
NODE_PROCS=${NODE_PROCS:-1}
READY_TIMEOUT=${READY_TIMEOUT:-300}
HEARTBEAT=${HEARTBEAT:-1s}
DOWN_AFTER=${DOWN_AFTER:-4s}
PPROF=${PPROF:-0}
DRAIN=${DRAIN:-60s}

die() { echo "million: $*" >&2; exit 1; }

[ -x "$BIN" ] || die "no switchboard binary at $BIN (make build, or set BIN)"
[ "$NODES" -ge 1 ] && [ "$NODES" -le 64 ] || die "NODES=$NODES: a cluster has 1..64 nodes"
[ "$NATS_SERVERS" -ge 0 ] && [ "$NATS_SERVERS" -le 99 ] || die "NATS_SERVERS=$NATS_SERVERS: want 0 (embedded) to 99"
[ $((CONNS % 2)) -eq 0 ] && [ "$CONNS" -ge 2 ] || die "CONNS=$CONNS: want an even number, at least 2 (users pair up)"
case "$DATA" in /tmp/?*) ;; *) die "DATA=$DATA: want a folder under /tmp (it is removed at the end)" ;; esac
[ ! -e "$DATA" ] || die "DATA=$DATA exists: remove it or choose another (this run removes what it creates)"
per_node=$(((CONNS + NODES - 1) / NODES))
nofile=$(ulimit -n)
# A node keeps ~100 files for itself (preflight's reserve), and the bench
# spreads users evenly over the nodes.
[ "$nofile" = unlimited ] || [ "$per_node" -le $((nofile - 150)) ] ||
	die "CONNS=$CONNS over NODES=$NODES is $per_node connections a node, past the open-file limit ($nofile) less a node's reserve: add nodes"

# Host limits the run needs: a file for each end of every connection, and
# the memory measured per connection at small scale (docs/BENCHMARKS.md):
# ~0.7 KiB of node RSS, ~3.6 KiB of generator RSS and ~10 KiB of kernel slab
# per client and server socket pair, rounded up to 15 KiB, and ~31 MiB for
# each empty node.
file_max=$(cat /proc/sys/fs/file-max)
files_open=$(cut -f1 /proc/sys/fs/file-nr)
[ $((2 * CONNS + files_open + 10000)) -le "$file_max" ] ||
	die "fs.file-max is $file_max with $files_open open: $CONNS connections need $((2 * CONNS)) more (sysctl -w fs.file-max=$((2 * CONNS + files_open + 100000)))"
need_kb=$((CONNS * 15 + NODES * 31 * 1024 + 200 * 1024))
avail_kb=$(awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo)
[ "$need_kb" -le "$avail_kb" ] ||
	echo "million: WARNING: the run needs about $((need_kb / 1024)) MiB (15 KiB a connection, 31 MiB a node), $((avail_kb / 1024)) MiB are available" >&2

# seconds converts 90, 90s, 2m or 1h to seconds.
seconds() {
	case "$1" in
	*ms) echo 0 ;;
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*h) echo $((${1%h} * 3600)) ;;
	*) echo "$1" ;;
	esac
}
hold_s=$(seconds "$HOLD")
duration_s=$(seconds "$DURATION")
[ "$hold_s" -ge 2 ] || die "HOLD=$HOLD: want at least 2s (memory is read in the middle of the hold)"

mkdir -p "$DATA" "$OUT/logs"
DATA=$(cd "$DATA" && pwd)
OUT=$(cd "$OUT" && pwd)

node_pids=()
nats_pids=()
bench_pid=""
worker_pids=""

# end_all sends SIGTERM to the PIDs given, waits up to 30 s for each, then
# sends SIGKILL.
end_all() {
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do
		for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}

# stop ends every process this script started, by PID: the bench first (it
# stops its own workers; any still there after 10 s are ended by the PIDs
# seen), then the nodes, then NATS; then it removes DATA.
stop() {
	trap - EXIT INT TERM
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		kill "$bench_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$bench_pid" 2>/dev/null || true
	fi
	# A worker seen earlier is ended only if that PID is still a bench worker.
	for p in $worker_pids; do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "bench --worker" && kill "$p" 2>/dev/null || true
	done
	# The nodes before NATS, so that none logs its NATS connection lost.
	end_all "${node_pids[@]}"
	end_all "${nats_pids[@]}"
	rm -rf "$DATA"
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "million: $NODES nodes, $CONNS connections ($per_node a node), $NATS_SERVERS NATS servers; hold $HOLD, then $RATE msg/s for $DURATION, cross-node share $CROSS"
echo "million: load now: $(cut -d' ' -f1-3 /proc/loadavg); report and logs in $OUT"

# NATS: a bare nats-server, the version go.mod pins, tuned as the embedded
# one is (cluster/server.go): route pings every 500 ms (3 missed), client
# pings every 1 s (2 missed), 5 s write deadline, 128 MiB per connection, one
# route per peer.
if [ -z "$NATS_BIN" ] && [ "$NATS_SERVERS" -gt 0 ]; then
	NATS_BIN=$DATA/nats-server
	(cd "$(dirname "$0")/.." && go build -o "$NATS_BIN" github.com/nats-io/nats-server/v2) ||
		die "cannot build nats-server (set NATS_BIN)"
fi
nats_urls=()
for k in $(seq 1 "$NATS_SERVERS"); do
	nats_urls+=("nats://127.0.0.1:$((PORT_BASE + 400 + k))")
done
for k in $(seq 1 "$NATS_SERVERS"); do
	routes=""
	for j in $(seq "$NATS_SERVERS"); do
		[ "$j" = "$k" ] && continue
		routes="$routes\"nats-route://127.0.0.1:$((PORT_BASE + 500 + j))\", "
	done
	cat >"$DATA/nats$k.conf" <<EOF
server_name: "million-nats-$k"
listen: "127.0.0.1:$((PORT_BASE + 400 + k))"
ping_interval: "1s"
ping_max: 2
write_deadline: "5s"
max_pending: 134217728
cluster {
  name: "million"
  listen: "127.0.0.1:$((PORT_BASE + 500 + k))"
  no_advertise: true
  pool_size: -1
  ping_interval: "500ms"
  ping_max: 3
  write_deadline: "5s"
  routes: [${routes%, }]
}
EOF
	"$NATS_BIN" -c "$DATA/nats$k.conf" >"$OUT/logs/nats$k.log" 2>&1 &
	nats_pids+=($!)
done

for k in $(seq 1 "$NATS_SERVERS"); do
	for _ in $(seq 100); do grep -q "Server is ready" "$OUT/logs/nats$k.log" && break; sleep 0.1; done
	grep -q "Server is ready" "$OUT/logs/nats$k.log" || die "NATS server $k is not ready after 10 s (see $OUT/logs/nats$k.log)"
done

# The keys: serve creates them on first run; every node gets a copy.
mkdir -p "$DATA/n1"
"$BIN" serve --data "$DATA/n1" --listen 127.0.0.1:0 --metrics "" --log warn >"$OUT/logs/keys.log" 2>&1 &
first=$!
for _ in $(seq 100); do [ -f "$DATA/n1/keys" ] && break; sleep 0.1; done
kill "$first"; wait "$first" || true
[ -f "$DATA/n1/keys" ] || die "serve made no keys file (see $OUT/logs/keys.log)"

list=""
addrs=""
metrics=""
for i in $(seq "$NODES"); do
	if [ "$NATS_SERVERS" -gt 0 ]; then
		list="$list,$i=127.0.0.1:$((PORT_BASE + i))//"
	else
		list="$list,$i=127.0.0.1:$((PORT_BASE + i))/127.0.0.1:$((PORT_BASE + 300 + i))/127.0.0.1:$((PORT_BASE + 600 + i))"
	fi
	addrs="$addrs,127.0.0.1:$((PORT_BASE + i))"
	metrics="$metrics,127.0.0.1:$((PORT_BASE + 100 + i))"
	if [ "$i" -gt 1 ]; then
		mkdir -p "$DATA/n$i"
		cp "$DATA/n1/keys" "$DATA/n$i/keys"
		chmod 0600 "$DATA/n$i/keys"
	fi
done
list=${list#,}
addrs=${addrs#,}
metrics=${metrics#,}

# Each node is a client of one NATS server, node i of server (i-1) mod
# NATS_SERVERS + 1, so that they share the nodes evenly (or, with
# NATS_SERVERS=0, embeds its own, as `make cluster` does). Its settings keep an
# idle node small: one event loop and two routing workers (53 nodes share two
# cores), 8 MiB memtables (the smallest Badger opens with values kept in the
# LSM: its 1 MiB value threshold must fit 15% of one; the batch and group
# limits shrunk so that a full batch fits that cap too: storage/config.go),
# a 4,096-entry metadata cache, and queues a quarter of the defaults.
for i in $(seq "$NODES"); do
	pprof=""
	[ "$PPROF" != 1 ] || pprof="127.0.0.1:$((PORT_BASE + 200 + i))"
	nats=()
	[ "$NATS_SERVERS" -eq 0 ] || nats=(--cluster-nats "${nats_urls[$(((i - 1) % NATS_SERVERS))]}")
	GOMAXPROCS=$NODE_PROCS "$BIN" serve --data "$DATA/n$i" --pprof "$pprof" "${nats[@]}" \
		--listen "127.0.0.1:$((PORT_BASE + i))" --metrics "127.0.0.1:$((PORT_BASE + 100 + i))" --log info \
		--cluster-name million --cluster-node "$i" --cluster-nodes "$list" \
		--cluster-heartbeat "$HEARTBEAT" --cluster-down-after "$DOWN_AFTER" \
		--loops 1 --shards 2 --memtable-size 8MiB --batch-max-ops 256 --batch-max-bytes 128KiB \
		--group-max-members 64 --meta-cache-entries 4096 --commit-queue 1024 --routing-queue 1024 \
		--max-in-flight 2048 >"$OUT/logs/n$i.log" 2>&1 &
	node_pids+=($!)
done

# peers_up prints how many peers a node's log last saw up.
peers_up() {
	awk '/cluster: node (up|down)/ {
		match($0, /peer=[0-9]+/); p = substr($0, RSTART + 5, RLENGTH - 5)
		up[p] = ($0 ~ /node up/) }
	END { n = 0; for (p in up) n += up[p]; print n }' "$1"
}
t0=$(date +%s)
while :; do
	ready=0
	for i in $(seq "$NODES"); do
		kill -0 "${node_pids[$((i - 1))]}" 2>/dev/null || die "node $i exited (see $OUT/logs/n$i.log)"
		curl -sf -o /dev/null "http://127.0.0.1:$((PORT_BASE + 100 + i))/readyz" || continue
		[ "$(peers_up "$OUT/logs/n$i.log")" -eq $((NODES - 1)) ] || continue
		ready=$((ready + 1))
	done
	[ "$ready" -eq "$NODES" ] && break
	[ $(($(date +%s) - t0)) -lt "$READY_TIMEOUT" ] || die "after ${READY_TIMEOUT}s only $ready of $NODES nodes are ready and see every peer (logs in $OUT/logs)"
	sleep 1
done
formed="million: cluster up in $(($(date +%s) - t0)) s: $NODES nodes ready, each sees $((NODES - 1)) peers"
echo "$formed"

# rss_kb sums VmRSS (kB) over the PIDs given, and cpu_s their user and
# system CPU seconds; one awk each, so that a snapshot of 53 nodes stays
# quick on a loaded host. A PID that is gone counts 0.
rss_kb() {
	local files=() p
	for p in "$@"; do [ -r "/proc/$p/status" ] && files+=("/proc/$p/status"); done
	[ ${#files[@]} -gt 0 ] || { echo 0; return; }
	awk '/^VmRSS:/ { s += $2 } END { print s + 0 }' "${files[@]}" 2>/dev/null || echo 0
}
cpu_s() {
	local files=() p
	for p in "$@"; do [ -r "/proc/$p/stat" ] && files+=("/proc/$p/stat"); done
	[ ${#files[@]} -gt 0 ] || { echo 0; return; }
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); t += $12 + $13 } END { printf "%.1f", t / hz }' "${files[@]}" 2>/dev/null || echo 0
}
meminfo_kb() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
tcp_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
conntrack() { cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo -; }

# snapshot LABEL records one memory point in $OUT/memory.tsv.
snapshot() {
	local gen="" kids=""
	if [ -n "$bench_pid" ]; then
		# The bench's workers are its children; ps fails when it has none.
		kids=$(ps -o pid= --ppid "$bench_pid" | tr '\n' ' ' || true)
		gen="$bench_pid $kids"
		worker_pids="$worker_pids $kids"
	fi
	# shellcheck disable=SC2086
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(rss_kb "${node_pids[@]}")" "$(rss_kb $gen)" \
		"$(rss_kb "${nats_pids[@]}")" "$(meminfo_kb Slab)" "$(meminfo_kb SUnreclaim)" "$(tcp_pages)" \
		"$(meminfo_kb MemAvailable)" "$(conntrack)" "$(date +%s.%N)" "$(cpu_s "${node_pids[@]}")" \
		"$(cpu_s "${nats_pids[@]}")" >>"$OUT/memory.tsv"
}
printf 'point\tnodes_rss_kb\tgenerator_rss_kb\tnats_rss_kb\tslab_kb\tsunreclaim_kb\ttcp_mem_pages\tmemavailable_kb\tconntrack\tunix_s\tnodes_cpu_s\tnats_cpu_s\n' >"$OUT/memory.tsv"
snapshot before
nats_cpu0=$(cpu_s "${nats_pids[@]}")

"$BIN" bench phone --cluster-nodes "$NODES" --cross "$CROSS" --addr "$addrs" --metrics "$metrics" \
	--keys "$DATA/n1/keys" --pairs $((CONNS / 2)) --connect-rate "$CONNECT_RATE" --hold "$HOLD" \
	--rate "$RATE" --duration "$DURATION" --drain "$DRAIN" --out "$OUT/bench" \
	>"$OUT/bench.txt" 2>"$OUT/bench.log" &
bench_pid=$!

# wait_line PATTERN waits until the bench logs it; false if the bench ended.
wait_line() {
	while ! grep -q "$1" "$OUT/bench.log"; do
		kill -0 "$bench_pid" 2>/dev/null || return 1
		sleep 0.5
	done
}
if wait_line "holding them idle"; then
	snapshot hold-start
	sleep $((hold_s / 2))
	snapshot hold
	if grep -q "hold over" "$OUT/bench.log"; then
		late="the hold point was read after the hold ended (the host was too slow): its figures include traffic; lengthen HOLD"
		echo "million: $late" >&2
	fi
	if wait_line "hold over; sending"; then
		sleep $((duration_s / 2))
		snapshot traffic
	fi
fi
set +e
wait "$bench_pid"
rc=$?
set -e
bench_pid=""
nats_cpu=$(awk -v a="$nats_cpu0" -v b="$(cpu_s "${nats_pids[@]}")" 'BEGIN { printf "%.1f", b - a }')

# The summary: the bench's own (figures, messages, latency, CPU, memory as
# the nodes report it), then memory per connection from the points above.
echo "$formed" >"$OUT/summary.txt"
awk '/^notes/ { exit } { print }' "$OUT/bench.txt" | tee -a "$OUT/summary.txt"
awk -F'\t' -v conns="$CONNS" -v nodes="$NODES" '
NR == 1 { next }
{ p[$1] = 1; for (i = 2; i <= NF; i++) v[$1, i] = $i }
function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
function at(point, i, kb) { return !(point in p) ? "-" : kb ? mib(v[point, i]) : v[point, i] }
function row(name, i, kb) { printf "  %-32s %12s %12s %12s\n", name, at("before", i, kb), at("hold", i, kb), at("traffic", i, kb) }
function per(i) { return sprintf("%.0f B", (v["hold", i] - v["before", i]) * 1024 / conns) }
END {
	printf "memory (this script, /proc)       %12s %12s %12s\n", "before", "hold", "traffic"
	row("nodes RSS (sum)", 2, 1); row("generator RSS (bench + workers)", 3, 1); row("NATS servers RSS", 4, 1)
	row("kernel Slab", 5, 1); row("kernel SUnreclaim", 6, 1); row("TCP mem (sockstat, pages)", 7, 0)
	row("MemAvailable", 8, 1); row("nf_conntrack_count", 9, 0)
	if (("hold-start" in p) && ("hold" in p)) {
		dt = v["hold", 10] - v["hold-start", 10]
		printf "\nidle CPU in the hold (%.0f s, no traffic): nodes %.2f cores (%.3f a node), NATS servers %.2f cores\n", dt,
			(v["hold", 11] - v["hold-start", 11]) / dt, (v["hold", 11] - v["hold-start", 11]) / dt / nodes, (v["hold", 12] - v["hold-start", 12]) / dt
	}
	if ("hold" in p) {
		printf "\nper connection at the hold, against before, over %d connections (kernel figures are the host'"'"'s: anything else running moves them):\n", conns
		printf "  node RSS %s (%s a node), generator RSS %s, kernel Slab %s (SUnreclaim %s) per client+server socket pair\n",
			per(2), mib(v["hold", 2] / nodes), sprintf("%.0f B", v["hold", 3] * 1024 / conns),
			per(5), per(6)
	}
}' "$OUT/memory.tsv" | tee -a "$OUT/summary.txt"
echo "NATS servers' CPU during the bench: $nats_cpu s (the bench's server CPU above is the nodes' only)" | tee -a "$OUT/summary.txt"
[ -z "${late:-}" ] || echo "WARNING: $late" | tee -a "$OUT/summary.txt"
slow=$(cat "$OUT"/logs/nats*.log 2>/dev/null | grep -ci "slow consumer" || true)
echo "NATS: $slow slow-consumer lines in the NATS servers' logs" | tee -a "$OUT/summary.txt"
downs=$(cat "$OUT"/logs/n*.log | grep -c "cluster: node down" || true)
echo "cluster: $downs node-down events seen by the nodes during the run (a node silent for $DOWN_AFTER: overload)" | tee -a "$OUT/summary.txt"
echo "million: bench exit status $rc; its report: $OUT/bench/report.md" | tee -a "$OUT/summary.txt"
exit "$rc"

#!/bin/sh
# Starts a three-node Switchboard cluster on this machine, in the foreground,
# and stops it on Ctrl-C: `make cluster`. Node i (1, 2, 3) serves clients on
# 127.0.0.1:707i, its admin listener on 127.0.0.1:907i, its embedded NATS on
# 127.0.0.1:427i (clients) and 127.0.0.1:627i (routes), and keeps its mailboxes
# in $DATA/ni. The three share node 1's token keys, so a token from any node
# logs in at every node, and its Noise keys, so a pinned key works at every
# node. docs/CLUSTER.md explains the rest.
set -eu
BIN=${BIN:-bin/switchboard}
DATA=${DATA:-cluster-data}
NODES=1=127.0.0.1:7071/127.0.0.1:6271/127.0.0.1:4271,2=127.0.0.1:7072/127.0.0.1:6272/127.0.0.1:4272,3=127.0.0.1:7073/127.0.0.1:6273/127.0.0.1:4273

mkdir -p "$DATA/n1" "$DATA/n2" "$DATA/n3"
if [ ! -f "$DATA/n1/keys" ] || [ ! -f "$DATA/n1/noise-keys" ]; then
	# serve creates the keys file on first run; the token command reads it.
	"$BIN" serve --data "$DATA/n1" --listen 127.0.0.1:0 --metrics "" --log warn &
	first=$!
	i=0
	while { [ ! -f "$DATA/n1/keys" ] || [ ! -f "$DATA/n1/noise-keys" ]; } && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill "$first"; wait "$first" || true
fi
for n in 2 3; do
	[ -f "$DATA/n$n/keys" ] || cp -p "$DATA/n1/keys" "$DATA/n$n/keys"
	[ -f "$DATA/n$n/noise-keys" ] || cp -p "$DATA/n1/noise-keys" "$DATA/n$n/noise-keys"
done

pids=""
stop() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
}
trap stop INT TERM EXIT
for n in 1 2 3; do
	"$BIN" serve --data "$DATA/n$n" --listen "127.0.0.1:707$n" --metrics "127.0.0.1:907$n" \
		--cluster-name local --cluster-node "$n" --cluster-nodes "$NODES" &
	pids="$pids $!"
done
echo "cluster: nodes on 127.0.0.1:7071, :7072, :7073 (admin :9071-:9073); Ctrl-C stops them"
wait

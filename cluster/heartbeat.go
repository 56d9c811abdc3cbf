package cluster

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A heartbeat, published on the control subject every Config.Heartbeat:
//
//	+---------+----------+----------+-----------+-----------------------+
//	| version | node     | hash     | instance  | canonical config text |
//	| 1 byte  | 4 bytes  | 8 bytes  | 8 bytes   | the rest              |
//	+---------+----------+----------+-----------+-----------------------+
//
// Integers are big-endian. The hash is Config.Hash; the text is the name and
// the sorted node list it hashes, so that a node that hears another hash can
// say what differs. The instance is random per Start: a heartbeat with this
// node's own ID and another instance is another process claiming the ID.
//
// A node handing over to a successor (Leave) sends, in place of its
// heartbeats, the same message with version leavingVersion: the others take
// it down at once, until they hear another instance of it. A node of an
// older version counts it as malformed and takes the node down when its
// heartbeats stop, as before.
const (
	heartbeatVersion = 1
	leavingVersion   = 2
	heartbeatHeader  = 1 + 4 + 8 + 8
)

// errHeartbeat is a control message that does not decode.
var errHeartbeat = errors.New("cluster: malformed heartbeat")

// heartbeat is a decoded heartbeat. text aliases the message it came from.
type heartbeat struct {
	node     uint32
	hash     uint64
	instance uint64
	text     []byte
	leaving  bool // a leaving notice
}

// appendHeartbeat appends the encoding of a heartbeat to dst.
func appendHeartbeat(dst []byte, node uint32, hash, instance uint64, text string) []byte {
	return appendControl(dst, heartbeatVersion, node, hash, instance, text)
}

// appendLeaving appends the encoding of a leaving notice to dst.
func appendLeaving(dst []byte, node uint32, hash, instance uint64, text string) []byte {
	return appendControl(dst, leavingVersion, node, hash, instance, text)
}

func appendControl(dst []byte, version byte, node uint32, hash, instance uint64, text string) []byte {
	dst = append(dst, version)
	dst = binary.BigEndian.AppendUint32(dst, node)
	dst = binary.BigEndian.AppendUint64(dst, hash)
	dst = binary.BigEndian.AppendUint64(dst, instance)
	return append(dst, text...)
}

// parseHeartbeat decodes b; the text of the result aliases b.
func parseHeartbeat(b []byte) (heartbeat, error) {
	if len(b) < heartbeatHeader || (b[0] != heartbeatVersion && b[0] != leavingVersion) {
		return heartbeat{}, errHeartbeat
	}
	return heartbeat{
		node:     binary.BigEndian.Uint32(b[1:]),
		hash:     binary.BigEndian.Uint64(b[5:]),
		instance: binary.BigEndian.Uint64(b[13:]),
		text:     b[heartbeatHeader:],
		leaving:  b[0] == leavingVersion,
	}, nil
}

// describeDiff names what differs between two canonical config texts (ours,
// theirs), at most a few differences, or "" if it cannot tell.
func describeDiff(ours, theirs string) string {
	split := func(s string) (string, map[string]string) {
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		nodes := make(map[string]string, len(lines))
		for _, l := range lines[1:] {
			id, rest, _ := strings.Cut(l, " ")
			nodes[id] = rest
		}
		return lines[0], nodes
	}
	on, onodes := split(ours)
	tn, tnodes := split(theirs)
	var diffs []string
	if on != tn {
		diffs = append(diffs, fmt.Sprintf("cluster name %q here, %q there", on, tn))
	}
	for _, id := range sortedKeys(onodes) {
		t, ok := tnodes[id]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("node %s is listed here only", id))
		case t != onodes[id]:
			diffs = append(diffs, fmt.Sprintf("node %s is %q here, %q there (client route nats)", id, onodes[id], t))
		}
	}
	for _, id := range sortedKeys(tnodes) {
		if _, ok := onodes[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("node %s is listed there only", id))
		}
	}
	const most = 4
	if len(diffs) > most {
		diffs = append(diffs[:most], fmt.Sprintf("and %d more", len(diffs)-most))
	}
	return strings.Join(diffs, "; ")
}

// sortedKeys returns m's keys, numeric strings, in numeric order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	})
	return keys
}

package cluster

import (
	"bytes"
	"testing"
)

// FuzzHeartbeat: a peer's heartbeat or leaving notice is parsed or
// refused, never a panic;
// one that parses encodes back to the same bytes; and whatever config text
// it carries, describing how it differs from ours returns.
func FuzzHeartbeat(f *testing.F) {
	ours := "prod\n1 127.0.0.1:7070\n2 127.0.0.1:7071\n"
	f.Add(appendHeartbeat(nil, 2, 99, 7, ours))
	f.Add(appendHeartbeat(nil, 3, 1, 1, "other\n1 127.0.0.1:7070\n"))
	f.Add([]byte{heartbeatVersion})
	f.Add(appendHeartbeat(nil, 1, 0, 0, "\n\n \n"))
	f.Add(appendLeaving(nil, 2, 99, 7, ours))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeartbeat(b)
		if err != nil {
			return
		}
		encode := appendHeartbeat
		if h.leaving {
			encode = appendLeaving
		}
		if again := encode(nil, h.node, h.hash, h.instance, string(h.text)); !bytes.Equal(again, b) {
			t.Fatalf("heartbeat % x re-encodes to % x", b, again)
		}
		_ = describeDiff(ours, string(h.text))
		_ = describeDiff(string(h.text), ours)
	})
}

package delivery_test

import (
	"log/slog"
	"testing"

	"switchboard/delivery"
	"switchboard/storage"
)

// TestMalformedPeerPayloads: a payload from another node that does not
// decode, or names nobody, is dropped and counted in PeerErrors, before
// anything is taken or answered.
func TestMalformedPeerPayloads(t *testing.T) {
	c, rs, _ := newClusterWith(t, 2, clusterOpts{cfg: delivery.Config{Shards: 2, Logger: slog.New(slog.DiscardHandler)}})
	n1 := rs[0]
	const bob = 2 // homed on node 1
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{name: "empty"},
		{name: "unknown kind", payload: []byte{99, 1}},
		{name: "SEND cut short", payload: []byte{1, 1, 5}},
		{name: "SEND of no session", payload: []byte{1, 1, 0, 1, bob, 7, 1, 'x'}},
		{name: "SEND to nobody", payload: []byte{1, 1, 5, 1, 0, 7, 1, 'x'}},
		{name: "SEND with a varint past the end", payload: []byte{1, 1, 5, 1, bob, 0x80}},
		{name: "answer cut short", payload: []byte{2, 5}},
		{name: "answer of an entry", payload: []byte{2, 5, byte(delivery.OutEntry), 7, 0, 0, 0}},
		{name: "receipt cut short", payload: []byte{3, bob, 1, 7}},
		{name: "receipt for nobody", payload: []byte{3, 0, 1, 7, 0, 0, 1, 1}},
		{name: "signal cut short", payload: []byte{6, 1, 1, 0, bob, 0x80}},
		{name: "settled cut short", payload: []byte{4, bob, 1}},
		{name: "group request from nobody", payload: []byte{7, 1, 5, 0, 7, 9, 1, 0, 0}},
		{name: "group message of no session", payload: []byte{7, 1, 0, 1, 7, 9, 1, 0, 0}},
		{name: "fan-out 0", payload: []byte{kindFanout, 1, 0, byte(storage.KindGroupMessage), 9, 5, 1, 1, bob}},
		{name: "fan-out of a 1:1 message", payload: []byte{kindFanout, 1, 7, byte(storage.KindMessage), 9, 5, 1, 1, bob}},
		{name: "fan-out naming more members than bytes", payload: []byte{kindFanout, 1, 7, byte(storage.KindGroupMessage), 9, 5, 1, 0x7f, bob}},
		{name: "fanned cut short", payload: []byte{9}},
	} {
		errs, sent := n1.Stats().PeerErrors.Load(), c.sent.Load()
		n1.FromPeer(2, tc.payload)
		if n := n1.Stats().PeerErrors.Load() - errs; n != 1 {
			t.Errorf("%s: PeerErrors grew by %d, want 1", tc.name, n)
		}
		if n := c.sent.Load() - sent; n != 0 {
			t.Errorf("%s: %d payloads sent in answer, want none", tc.name, n)
		}
	}
}

package protocol

import (
	"bytes"
	"testing"
	"time"
)

// recordSeeds are one record of each kind.
func recordSeeds() [][]byte {
	d := Deliver{From: 7654321, MsgID: 1234, Group: 99, Time: 1000, Body: []byte("hello")}
	x := Receipt{MsgID: 1234, More: 3, Read: true, By: 8765432}
	g := GroupEvent{Group: 99, Actor: 7654321, Op: GroupAdd, Time: 1000, Members: []uint64{1, 2}}
	return [][]byte{d.AppendRecord(nil), x.AppendRecord(nil), g.AppendRecord(nil)}
}

// TestRecordRoundTrip: a record made from a frame's fields becomes, with its
// seq, exactly the frame Append makes, and a batch entry that reads back.
func TestRecordRoundTrip(t *testing.T) {
	d := Deliver{Seq: 42, From: 7654321, MsgID: 1234, Time: 1000, Body: []byte("hello")}
	f, err := ParseRecord(d.AppendRecord(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := AppendRecordFrame(nil, f, 42), d.Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("frame from record % x, want % x", got, want)
	}
	var w BatchWriter
	w.Reset(42)
	if err := w.Record(f, 42); err != nil {
		t.Fatal(err)
	}
	var br BatchReader
	bf, _, err := ReadFrame(w.Append(nil), MaxServerFrame)
	if err != nil {
		t.Fatal(err)
	}
	br.Reset(bf)
	var got Deliver
	if !br.Next() || br.Deliver(&got) != nil || got.Seq != 42 || got.From != d.From || !bytes.Equal(got.Body, d.Body) {
		t.Fatalf("batch entry %+v (%v)", got, br.Err())
	}
	for _, bad := range [][]byte{nil, {byte(TypeSend)}, {byte(TypeDeliver) | FlagCompressed, 1, 1}} {
		if _, err := ParseRecord(bad); err == nil {
			t.Errorf("ParseRecord(% x) accepted", bad)
		}
	}
}

// FuzzRecord: any record ParseRecord accepts becomes a frame that ReadFrame
// reads back whole, with the same type, flags and seq; decoding never panics.
func FuzzRecord(f *testing.F) {
	for _, s := range recordSeeds() {
		f.Add(s, uint64(7))
	}
	f.Fuzz(func(t *testing.T, rec []byte, seq uint64) {
		if seq == 0 {
			seq = 1
		}
		r, err := ParseRecord(rec)
		if err != nil {
			return
		}
		frame := AppendRecordFrame(nil, r, seq)
		got, n, err := ReadFrame(frame, len(frame))
		if err != nil || n != len(frame) || got.Type != r.Type || got.Flags != r.Flags {
			t.Fatalf("record % x: frame % x read as %+v, %d, %v", rec, frame, got, n, err)
		}
		if r.Type == TypeDeliver {
			var d Deliver
			if d.DecodeRecord(r, seq) == nil {
				var w BatchWriter
				w.Reset(seq)
				w.Deliver(&d)
			}
		}
	})
}

// TestGroupEventRecordLive: a GROUP_EVENT record decodes to its fields, and
// sent within a second of its stamp it goes without its time, like a
// DELIVER: the frame is vector "GROUP_EVENT live"'s shape (no flag B).
func TestGroupEventRecordLive(t *testing.T) {
	at := StampTime(vectorStamp)
	g := GroupEvent{Group: team, Actor: alice, Op: GroupRemove, Time: vectorStamp, Members: []uint64{carol}}
	f, err := ParseRecord(g.AppendRecord(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sent time.Duration // after the stamp
		live bool
	}{{0, true}, {time.Second, true}, {time.Second + time.Millisecond, false}, {time.Hour, false}} {
		var got GroupEvent
		if err := got.DecodeRecord(f, 4326); err != nil {
			t.Fatal(err)
		}
		if Live(got.Time, at.Add(tc.sent)) != tc.live {
			t.Fatalf("Live %v after the stamp = %v, want %v", tc.sent, !tc.live, tc.live)
		}
		want := GroupEvent{Seq: 4326, Group: team, Actor: alice, Op: GroupRemove, Time: vectorStamp, Members: []uint64{carol}}
		if tc.live {
			got.Time, want.Time = 0, 0
		}
		if !bytes.Equal(got.Append(nil), want.Append(nil)) {
			t.Fatalf("%v after the stamp: %+v, want %+v", tc.sent, got, want)
		}
		if tc.live && got.Append(nil)[1]&FlagB != 0 {
			t.Fatalf("live GROUP_EVENT carries flag B")
		}
	}
}

// TestMaxLoginFrame: the longest LOGIN fits the frame limit before login.
func TestMaxLoginFrame(t *testing.T) {
	l := Login{Token: make([]byte, MaxToken), Ping: 1<<32 - 1, Dict: 1<<32 - 1, Ack: 1<<64 - 1}
	b := l.Append(nil)
	if _, n, err := ReadFrame(b, MaxLoginFrame); err != nil || n != len(b) {
		t.Fatalf("longest LOGIN (%d bytes) read with MaxLoginFrame: %v", len(b), err)
	}
	if n := len(b) - uvarintLen(uint64(len(b))); n != 535 {
		t.Errorf("longest LOGIN is %d bytes without its length prefix; frame.go says 535", n)
	}
}

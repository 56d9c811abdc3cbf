package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// TestBatchRoundTrip writes a batch of mixed entries and reads it back, and
// checks that a repeated sender costs one byte on the wire.
func TestBatchRoundTrip(t *testing.T) {
	body := opaque("body", 100)
	entries := []batchEntry{
		{Deliver: &Deliver{Seq: 100, From: alice, MsgID: 1, Body: body}},
		{Deliver: &Deliver{Seq: 101, From: alice, MsgID: 2, Time: vectorStamp, Body: body}},
		{Receipt: &Receipt{Seq: 102, MsgID: 9, More: 3, Read: true}},
		{Deliver: &Deliver{Seq: 103, From: alice, MsgID: 3, Group: team, Body: []byte{}}},
		{GroupEvent: &GroupEvent{Seq: 104, Group: team, Actor: carol, Op: GroupAdd, Members: []uint64{bob, dave}}},
		{Deliver: &Deliver{Seq: 105, From: carol, MsgID: 4, Body: body}},
		{Deliver: &Deliver{Seq: 106, From: alice, MsgID: 5, Body: body}},
	}
	var w BatchWriter
	w.Reset(100)
	sizes := make([]int, 0, len(entries))
	for _, e := range entries {
		before := w.Len()
		switch {
		case e.Deliver != nil:
			w.Deliver(e.Deliver)
		case e.Receipt != nil:
			w.Receipt(e.Receipt)
		default:
			w.GroupEvent(e.GroupEvent)
		}
		sizes = append(sizes, w.Len()-before)
	}
	if w.Count() != len(entries) || w.NextSeq() != 107 {
		t.Fatalf("Count %d, NextSeq %d", w.Count(), w.NextSeq())
	}
	// Entry 0 and 1 differ only by time (4 bytes, flag B) and the sender
	// (4 bytes written, 1 byte of 0 in entry 1): 4 - 3 = +1.
	if sizes[1] != sizes[0]+1 {
		t.Errorf("same-sender DELIVER took %d bytes after %d: from was not written as 0", sizes[1], sizes[0])
	}
	frame := w.Append(nil)
	got, err := decodeFrame(frame, MaxServerFrame)
	if err != nil {
		t.Fatal(err)
	}
	if want := (&batchFrame{FirstSeq: 100, Entries: entries}); !sameFields(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", fieldsOf(got), fieldsOf(want))
	}

	// Reset reuses the buffer and forgets the last sender.
	w.Reset(7)
	w.Deliver(&Deliver{Seq: 7, From: alice, MsgID: 1})
	var br BatchReader
	f, _, _ := ReadFrame(w.Append(nil), MaxServerFrame)
	br.Reset(f)
	var d Deliver
	if !br.Next() || br.Deliver(&d) != nil || d.From != alice || d.Seq != 7 || br.Next() || br.Err() != nil {
		t.Fatalf("after Reset: %+v, %v", d, br.Err())
	}
}

// TestBatchReaderSkipping checks that entries the caller does not decode
// (redeliveries it already has) still pass their sender on to from = 0.
func TestBatchReaderSkipping(t *testing.T) {
	b := (&batchFrame{FirstSeq: 10, Entries: []batchEntry{
		{Deliver: &Deliver{Seq: 10, From: alice, MsgID: 1}},
		{Deliver: &Deliver{Seq: 11, From: alice, MsgID: 2}},
		{Deliver: &Deliver{Seq: 12, From: carol, MsgID: 3}},
		{Deliver: &Deliver{Seq: 13, From: carol, MsgID: 4}},
	}}).Append(nil)
	f, _, _ := ReadFrame(b, MaxServerFrame)
	var br BatchReader
	br.Reset(f)
	var got []uint64
	for br.Next() {
		if br.Seq()%2 == 0 {
			continue // skipped, as a client skips seqs it already acked
		}
		var d Deliver
		if err := br.Deliver(&d); err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Seq, d.From)
	}
	if want := []uint64{11, alice, 13, carol}; br.Err() != nil || !equalU64(got, want) {
		t.Fatalf("got %v (%v), want %v", got, br.Err(), want)
	}
}

func TestBatchReaderWrongType(t *testing.T) {
	b := (&batchFrame{FirstSeq: 1, Entries: []batchEntry{{Receipt: &Receipt{Seq: 1, MsgID: 5}}}}).Append(nil)
	f, _, _ := ReadFrame(b, MaxServerFrame)
	var br BatchReader
	br.Reset(f)
	if err := br.Deliver(&Deliver{}); err == nil {
		t.Fatal("Deliver before Next succeeded")
	}
	if !br.Next() {
		t.Fatal(br.Err())
	}
	if err := br.Deliver(&Deliver{}); err == nil {
		t.Fatal("Deliver on a RECEIPT entry succeeded")
	}
	if err := br.GroupEvent(&GroupEvent{}); err == nil {
		t.Fatal("GroupEvent on a RECEIPT entry succeeded")
	}
	var x Receipt
	if err := br.Receipt(&x); err != nil || x.MsgID != 5 || x.Seq != 1 {
		t.Fatalf("Receipt = %+v, %v", x, err)
	}
}

func TestBatchWriterSeqMustFollow(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("an entry out of seq order did not panic")
		}
	}()
	var w BatchWriter
	w.Reset(5)
	w.Receipt(&Receipt{Seq: 6, MsgID: 1})
}

func TestBatchReaderSeqWrap(t *testing.T) {
	var w BatchWriter
	w.Reset(1<<64 - 1)
	w.Receipt(&Receipt{Seq: 1<<64 - 1, MsgID: 1})
	payload := append(bytes.Clone(w.Payload()), w.Payload()[uvarintLen(1<<64-1):]...)
	var br BatchReader
	br.Reset(Frame{Type: TypeBatch, Payload: payload})
	n := 0
	for br.Next() {
		n++
	}
	if n != 1 || !errors.Is(br.Err(), ErrMalformed) {
		t.Fatalf("read %d entries, err %v; want 1 and ErrMalformed", n, br.Err())
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

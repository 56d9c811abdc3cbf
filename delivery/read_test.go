package delivery_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// readReceiptStored waits until sender's mailbox holds exactly the read
// receipt by reader for msgID..msgID+more, byte for byte.
func readReceiptStored(t *testing.T, store storage.Store, sender, reader, msgID, more uint64) {
	t.Helper()
	want := (&protocol.Receipt{MsgID: msgID, More: more, Read: true, By: reader}).AppendRecord(nil)
	var got []byte
	waitFor(t, "the read receipt in the sender's mailbox", func() bool {
		page, _, err := store.Read(sender, 1, 10, 0, nil)
		if err != nil || len(page) != 1 {
			return false
		}
		got = page[0].Value
		return page[0].Kind == storage.KindReceipt
	})
	if !bytes.Equal(got, want) {
		t.Fatalf("receipt record %x, want %x (read by %d)", got, want, reader)
	}
}

// TestReadReceiptNamesReader: a READ of 1:1 messages stores a read receipt
// that names the reader, so no READ can make a sender believe someone else
// read its messages.
func TestReadReceiptNamesReader(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	const sender, reader = 1, 5
	if err := r.Read(delivery.ReadReceipt{Reader: delivery.To(reader), Sender: delivery.To(sender), MsgID: 7, More: 3}); err != nil {
		t.Fatal(err)
	}
	readReceiptStored(t, store, sender, reader, 7, 3)
}

// TestReadRange: a READ over MaxReadRun ids, or one that passes 2^64-1, is
// refused with ErrReadRange and stores nothing; one just inside the bound
// is taken.
func TestReadRange(t *testing.T) {
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	for _, tc := range []struct {
		name        string
		msgID, more uint64
	}{
		{"over the bound", 1, delivery.MaxReadRun},
		{"2^64 ids", 1, math.MaxUint64},
		{"wraps", math.MaxUint64 - 10, 11},
	} {
		if err := r.Read(delivery.ReadReceipt{Reader: delivery.To(5), Sender: delivery.To(1), MsgID: tc.msgID, More: tc.more}); !errors.Is(err, delivery.ErrReadRange) {
			t.Errorf("%s: Read = %v, want ErrReadRange", tc.name, err)
		}
	}
	if err := r.Read(delivery.ReadReceipt{Reader: delivery.To(5), Sender: delivery.To(1), MsgID: 100, More: delivery.MaxReadRun - 1}); err != nil {
		t.Fatal(err)
	}
	readReceiptStored(t, store, 1, 5, 100, delivery.MaxReadRun-1) // and only that one
}

// TestReadWaitsForAFullQueue: a READ whose sender's shard queue is full is
// held by the reader's shard and stored once there is room; it does not
// vanish. One that finds the reader's queue full too is refused with
// ErrBusy and counted in ReadsDropped.
func TestReadWaitsForAFullQueue(t *testing.T) {
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := delivery.New(delivery.Config{Shards: 2, QueueLen: 2}, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		store.Close()
	})
	const sender = 1
	reader := uint64(2)
	for r.ShardOf(reader) == r.ShardOf(sender) {
		reader++
	}
	// Not started: nothing drains the sender's queue, which two logins fill.
	for i := range 2 {
		if !r.Login(newFake().s(), delivery.To(sender), 0) {
			t.Fatalf("login %d: the queue is full", i)
		}
	}
	if err := r.Read(delivery.ReadReceipt{Reader: delivery.To(reader), Sender: delivery.To(sender), MsgID: 7, More: 0}); err != nil {
		t.Fatalf("Read with the sender's queue full: %v", err)
	}
	if !r.Login(newFake().s(), delivery.To(reader), 0) { // the reader's queue: the held READ and this
		t.Fatal("the reader's queue is full")
	}
	if err := r.Read(delivery.ReadReceipt{Reader: delivery.To(reader), Sender: delivery.To(sender), MsgID: 8, More: 0}); !errors.Is(err, delivery.ErrBusy) {
		t.Fatalf("Read with both queues full: %v, want ErrBusy", err)
	}
	r.Start(sessions)
	readReceiptStored(t, store, sender, reader, 7, 0)
	if n := r.Stats().ReadsDropped.Load(); n != 1 {
		t.Fatalf("ReadsDropped = %d, want 1", n)
	}
}

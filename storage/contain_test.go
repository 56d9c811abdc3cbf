package storage

import (
	"errors"
	"testing"
)

// TestCommitterPanicContained: a panic while an op is applied fails that
// op's batch with ErrCommit (a retryable refusal, never an ACCEPT), the
// store reopens and takes writes again with what was committed before; a
// panic in a caller's callback stays in that callback. Five panics within
// a minute leave the store refusing writes and Down set.
func TestCommitterPanicContained(t *testing.T) {
	s, err := openBadger(testConfig(t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const poison = 666
	hook := func(o *op) {
		if o.kind == opAppend && o.e.Recipient == poison {
			panic("injected")
		}
	}
	s.panicHook.Store(&hook)
	if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, MsgID: 1, Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	err = AppendWait(s, Entry{Recipient: poison, Seq: 1, Kind: KindMessage, MsgID: 2})
	if !errors.Is(err, ErrCommit) {
		t.Fatalf("append that panicked: %v, want ErrCommit", err)
	}
	appendUntilRecovered(t, s, 1, 2)
	es, _, err := s.Read(1, 1, 10, 0, nil)
	if err != nil || len(es) != 2 || string(es[0].Value) != "kept" {
		t.Fatalf("after the panic: %d entries, %v", len(es), err)
	}

	// A panic in a callback is the caller's: the next op is served.
	done := make(chan struct{})
	s.Append(Entry{Recipient: 2, Seq: 1, Kind: KindMessage, MsgID: 3}, func(error) {
		close(done)
		panic("callback")
	})
	<-done
	if err := AppendWait(s, Entry{Recipient: 2, Seq: 2, Kind: KindMessage, MsgID: 4}); err != nil {
		t.Fatalf("append after a callback panicked: %v", err)
	}
	if st := s.Stats(); st.Panics != 2 || st.Down != 0 {
		t.Fatalf("Panics %d Down %d, want 2 and 0", st.Panics, st.Down)
	}

	// Three more within the minute: the store gives up.
	for i := range 3 {
		seq := uint64(10 + i)
		if err := AppendWait(s, Entry{Recipient: poison, Seq: seq, Kind: KindMessage, MsgID: seq}); !errors.Is(err, ErrCommit) {
			t.Fatalf("panic %d: %v, want ErrCommit", 3+i, err)
		}
		if i < 2 {
			appendUntilRecovered(t, s, 3, uint64(1+10*i))
		}
	}
	if st := s.Stats(); st.Panics != 5 || st.Down != 1 {
		t.Fatalf("Panics %d Down %d, want 5 and 1", st.Panics, st.Down)
	}
	if err := AppendWait(s, Entry{Recipient: 4, Seq: 1, Kind: KindMessage, MsgID: 99}); !errors.Is(err, ErrRecovering) {
		t.Fatalf("append once down: %v, want ErrRecovering", err)
	}
}

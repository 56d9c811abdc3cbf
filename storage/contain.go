package storage

import (
	"fmt"
	"runtime/debug"
	"time"
)

// Let it crash, but only the part that failed. The committer is the one
// goroutine every write goes through, so a panic on it would take the
// process down with every connection. Instead:
//
//   - A panic while an op is applied, or while the batch is flushed,
//     committed or synced, is a failed commit: the transaction is
//     discarded, every op of the batch (the one that panicked included)
//     fails with ErrCommit, which callers answer with a retryable refusal,
//     and the committer reopens the database (the recovery of a failed
//     commit), which also drops every cache the panic may have left
//     half-updated. Nothing is acknowledged that was not committed.
//   - A panic in a caller's callback (done, ackDone) is the caller's: it
//     is contained to that callback, and the other callbacks run.
//
// Each panic is counted (Stats.Panics) and logged once with its stack.
// After panicLimit panics within panicWindow the store stops reopening:
// it refuses every write with ErrRecovering and Stats.Down is 1, so the
// process reports not ready (serve's /readyz) and is replaced, instead of
// looping.
const (
	panicLimit  = 5
	panicWindow = time.Minute
)

// errPanic wraps a recovered panic; its cause is the panic value.
type errPanic struct{ v any }

func (e errPanic) Error() string { return fmt.Sprintf("storage: panic: %v", e.v) }

// contained runs fn on the committer, turning a panic into an error.
func (s *engine) contained(what string, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked(what, v)
			err = errPanic{v}
		}
	}()
	return fn()
}

// panicked counts and logs a panic and decides whether the store gives up.
func (s *engine) panicked(what string, v any) {
	s.stats.panics.Add(1)
	s.log.Error("storage: panic on the committer; contained", "in", what, "panic", v, "stack", string(debug.Stack()))
	now := time.Now()
	s.panicTimes = append(s.panicTimes, now)
	if len(s.panicTimes) > panicLimit {
		s.panicTimes = s.panicTimes[1:]
	}
	if len(s.panicTimes) == panicLimit && now.Sub(s.panicTimes[0]) < panicWindow {
		if s.stats.down.Swap(1) == 0 {
			s.log.Error("storage: the committer panicked too often; refusing writes until the process is replaced", "panics", panicLimit, "within", panicWindow)
		}
	}
}

// call runs a caller's callback; a panic in it is counted and logged, and
// the other callbacks still run.
func (s *engine) call(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			s.panicked("callback", v)
		}
	}()
	fn()
}

package storage

// Prefetching overlaps a batch's commit with the dedupe lookups of the next
// one (only retries are looked up: Entry.Retry). A Badger commit is mostly
// waiting for the fsync, and a dedupe lookup (a miss, almost always:
// memtables plus bloom filters) was the committer's largest own cost per
// message before first transmissions skipped it. So, just before committing batch N, the
// committer opens a read snapshot (which sees everything before N), and a
// helper goroutine takes the ops that queue during the commit and looks
// their dedupe keys up in it. Batch N+1 then only has to check what the
// snapshot cannot know: the keys batch N wrote (s.prevKeys) and its own
// (s.batchKeys). An op used in a later batch than N+1 is looked up again.

//
// Retries are rare (they follow a lost connection), and the helper costs
// every batch a snapshot, which makes the next commit copy the tier's tree
// nodes it touches, and a goroutine that every op queued meanwhile passes
// through. So it runs only within prefetchSpell batches of one that held a
// retry; a retry after a quiet spell is looked up by the committer itself.

// prefetchSpell is how many batches after the last retry the helper runs.
const prefetchSpell = 64

// prefetch starts the helper and returns the function that stops it and
// hands its ops to s.pending, in queue order. Committer goroutine only,
// with a batch built and not yet committed.
func (s *engine) prefetch() (stop func()) {
	if s.retryBatch == 0 || s.batchNo > s.retryBatch+prefetchSpell {
		return func() {}
	}
	snap, release, ok := s.be.snapshot()
	if !ok {
		return func() {}
	}
	valid := s.batchNo + 1
	quit := make(chan struct{}) // closed by stop
	done := make(chan struct{}) // closed by the helper
	got := s.prefetched[:0]     // owned by the helper until done
	go func() {
		defer close(done)
		defer release()
		for len(got) < s.cfg.MaxBatch { // one batch ahead at most
			select {
			case <-quit:
				return
			case o, ok := <-s.q:
				if !ok {
					return // closed: the committer sees it too
				}
				if o.kind == opAppend && o.e.Kind.deduped() && o.e.Retry {
					d, found, err := snap.dedupe(o.e.Sender, o.e.MsgID, o.e.Recipient)
					if err == nil { // else the committer looks it up itself
						o.dupBatch, o.dupFound, o.dup = valid, found, d
					}
				}
				got = append(got, o)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		for i := range got {
			s.pending.pushBack(got[i])
		}
		clear(got)
		s.prefetched = got[:0]
	}
}

// dedupe returns the dedupe record for o's entry, if one exists: from the
// prefetched lookup when it is valid for this batch, else from w.
func (s *engine) dedupe(w writer, o *op) (Dup, bool, error) {
	e := &o.e
	if o.dupBatch != s.batchNo {
		return w.dedupe(e.Sender, e.MsgID, e.Recipient)
	}
	id := dedupeID{e.Sender, e.MsgID, e.Recipient}
	if d, ok := s.batchKeys[id]; ok {
		return d, true, nil
	}
	if d, ok := s.prevKeys[id]; ok {
		return d, true, nil
	}
	return o.dup, o.dupFound, nil
}

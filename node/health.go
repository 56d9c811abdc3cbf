package node

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/storage"
)

// healthEvery is how often the store's commit counters are sampled to tell
// a committer that is failing and recovering: once a second, like the
// gateway's tick, so a probe every few seconds sees the latest state.
const healthEvery = time.Second

// stuckAfter is how many samples in a row with writes queued and no commit
// make the node not ready: a commit takes milliseconds, and even a large
// batch with its sync well under a second, so five seconds of none while
// writes wait is a committer that hangs.
const stuckAfter = 5

// health is what /readyz reports beyond what the parts say themselves.
type health struct {
	stopping atomic.Bool // Stop was called

	mu         sync.Mutex
	recovering string // guarded by mu; why commits are failing or stuck, "" when they are not
	still      int    // samples in a row with writes queued and no commit; sampler only

	quit chan struct{} // closed by stop
	done chan struct{} // closed when the sampler returned
}

// start samples the store's commit counters every healthEvery until stop.
func (h *health) start(n *Node) {
	h.quit, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		t := time.NewTicker(healthEvery)
		defer t.Stop()
		last := n.Store().Stats()
		for {
			select {
			case <-h.quit:
				return
			case <-t.C:
			}
			st := n.Store().Stats()
			why := h.judge(last, st)
			h.mu.Lock()
			h.recovering = why
			h.mu.Unlock()
			last = st
		}
	}()
}

// judge returns why the store is not ready, judging by two samples of its
// counters healthEvery apart, or "". Sampler goroutine only.
func (h *health) judge(last, st storage.Stats) string {
	if st.Queued > 0 && st.Commits == last.Commits && st.CommitErrors == last.CommitErrors {
		h.still++
	} else {
		h.still = 0
	}
	switch {
	case st.CommitErrors > last.CommitErrors && st.Commits == last.Commits:
		return fmt.Sprintf("storage: %d commits failed in the last %v and none succeeded; the store is recovering", st.CommitErrors-last.CommitErrors, healthEvery)
	case h.still >= stuckAfter:
		return fmt.Sprintf("storage: %d writes queued and no commit for %v; the committer is not advancing", st.Queued, time.Duration(h.still)*healthEvery)
	}
	return ""
}

// stop ends the sampler; it may be called once, after start.
func (h *health) stop() {
	if h.quit != nil {
		close(h.quit)
		<-h.done
	}
}

// Ready is nil while the process serves as it should, and otherwise says
// why not: it is stopping, the gateway does not accept connections, a
// routing worker crashed too often and was left down, or the store
// refuses writes (its committer panicked too often, free disk space is
// below the floor, or its commits are failing while it recovers).
func (n *Node) Ready() error {
	if n.health.stopping.Load() || n.srv.Draining() {
		return errors.New("stopping: draining connections")
	}
	select {
	case <-n.engDone:
		return errors.New("gateway: the network engine stopped; no connections are accepted")
	default:
	}
	if err := n.Router().Ready(); err != nil {
		return err
	}
	st := n.Store().Stats()
	if st.Down != 0 {
		return errors.New("storage: the committer panicked too often; writes are refused")
	}
	if st.DiskLow != 0 {
		return errors.New("storage: free disk space is below the floor (--min-free); new messages are refused")
	}
	n.health.mu.Lock()
	why := n.health.recovering
	n.health.mu.Unlock()
	if why != "" {
		return errors.New(why)
	}
	return nil
}

// serveHealthz answers 200 while the process runs: it is alive, whether or
// not it is ready.
func (n *Node) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Write([]byte("alive\n"))
}

// serveReadyz answers 200 while Ready is nil, and 503 with the reason
// otherwise: a load balancer then sends no new clients, and a worker or a
// store that is down for good tells the orchestrator to replace the
// process.
func (n *Node) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	if err := n.Ready(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

package node

import (
	"strings"
	"testing"

	"switchboard/storage"
)

// TestHealthJudge: a store whose commits fail with none succeeding is
// recovering; one with writes queued and no commit, failed or not, for
// stuckAfter samples in a row is not advancing; any commit clears both.
func TestHealthJudge(t *testing.T) {
	var h health
	base := storage.Stats{Commits: 10, CommitErrors: 1}
	if why := h.judge(base, storage.Stats{Commits: 10, CommitErrors: 3}); !strings.Contains(why, "recovering") {
		t.Fatalf("failing commits: %q", why)
	}
	stuck := storage.Stats{Commits: 10, CommitErrors: 1, Queued: 7}
	for i := 1; i < stuckAfter; i++ {
		if why := h.judge(base, stuck); why != "" {
			t.Fatalf("sample %d of a stuck committer: %q, want ready until %d", i, why, stuckAfter)
		}
	}
	if why := h.judge(base, stuck); !strings.Contains(why, "7 writes queued") || !strings.Contains(why, "not advancing") {
		t.Fatalf("stuck for %d samples: %q", stuckAfter, why)
	}
	if why := h.judge(base, storage.Stats{Commits: 11, CommitErrors: 1, Queued: 7}); why != "" {
		t.Fatalf("a commit went through: %q, want ready", why)
	}
	if why := h.judge(base, storage.Stats{Commits: 10, CommitErrors: 1}); why != "" || h.still != 0 {
		t.Fatalf("nothing queued: %q (still %d), want ready", why, h.still)
	}
}

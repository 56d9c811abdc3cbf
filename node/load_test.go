package node

import (
	"strings"
	"testing"
)

// TestUsageTitles: every section of --help has a title.
func TestUsageTitles(t *testing.T) {
	var b strings.Builder
	Usage(&b)
	if strings.Contains(b.String(), "\n:\n") {
		t.Fatalf("--help has a section without a title:\n%s", b.String())
	}
}

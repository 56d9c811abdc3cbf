package preflight

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProbeSync times durable writes in a real folder: every write is
// counted, the percentiles are in order, the CPU is read, and the probe's
// file is gone afterwards.
func TestProbeSync(t *testing.T) {
	dir := t.TempDir()
	s, err := probeSync(dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 20 || s.Bytes != syncRecordBytes {
		t.Errorf("%d writes of %d bytes, want 20 of %d", s.Count, s.Bytes, syncRecordBytes)
	}
	if s.P50 <= 0 || s.P50 > s.P99 || s.P99 > s.Max || s.CPU <= 0 {
		t.Errorf("p50 %.1f, p99 %.1f, max %.1f, CPU %.1f µs: want 0 < p50 ≤ p99 ≤ max and some CPU", s.P50, s.P99, s.Max, s.CPU)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the probe left %v", ents)
	}

	f, err := Probe{Data: filepath.Join(dir, "data"), Syncs: 5}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if f.Sync == nil || f.Sync.Count != 5 || f.DiskPath != dir {
		t.Errorf("facts sync %+v on %s, want 5 writes on %s (the data folder's nearest existing parent)", f.Sync, f.DiskPath, dir)
	}
	if f, _ := (Probe{Data: filepath.Join(dir, "data")}).Read(); f.Sync != nil {
		t.Errorf("a probe of no syncs timed %+v", f.Sync)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, NewReport(f)); err != nil {
		t.Fatal(err)
	}
	var js struct {
		Facts struct {
			Sync map[string]any `json:"sync"`
		} `json:"facts"`
	}
	if err := json.Unmarshal(buf.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(js.Facts.Sync))
	if want := []string{"count", "cpu_us", "max_us", "p50_us", "p99_us", "record_bytes"}; !slices.Equal(keys, want) {
		t.Errorf("facts.sync keys %v, want %v", keys, want)
	}
}

// TestProbeSyncFails: a folder the probe cannot write in is an error that
// names it.
func TestProbeSyncFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := probeSync(file, 3); err == nil || !strings.Contains(err.Error(), "a durable write in "+file) {
		t.Errorf("probing in a file: %v, want an error naming it", err)
	}
}

// TestWriteTextSync: the report says what a durable write cost, and calls
// a disk slow when its p50 is over 2 ms.
func TestWriteTextSync(t *testing.T) {
	f, err := fakeProbe(t, hostFiles(), 20000, 20000).Read()
	if err != nil {
		t.Fatal(err)
	}
	text := func(s *Sync) string {
		f.Sync = s
		var buf bytes.Buffer
		if err := WriteText(&buf, NewReport(f)); err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(buf.String()), " ")
	}
	if out := text(nil); strings.Contains(out, "Durable writes") {
		t.Errorf("unmeasured syncs reported:\n%s", out)
	}
	out := text(&Sync{Count: 200, Bytes: 600, P50: 213.4, P99: 410, Max: 1234, CPU: 84.2})
	for _, want := range []string{
		"Durable writes on the disk of " + f.DiskPath + ", 200 of 600 bytes each followed by fdatasync, as the server's log makes them: p50 213 µs, p99 410 µs, max 1.23 ms, and 84 µs of CPU each.",
		"no send is accepted faster than that p50 here.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "slow") {
		t.Errorf("a 213 µs sync called slow:\n%s", out)
	}
	if out := text(&Sync{Count: 200, Bytes: 600, P50: 4500, P99: 9000, Max: 12000, CPU: 90}); !strings.Contains(out, "p50 4.50 ms") || !strings.Contains(out, "Over 2.00 ms is slow for a messaging server") {
		t.Errorf("a 4.5 ms sync not called slow:\n%s", out)
	}
}

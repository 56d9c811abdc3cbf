package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/internal/testutil"
)

// waitFor polls cond until it holds or a second has passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, time.Second, what, cond)
}

func TestProgressPlain(t *testing.T) {
	var buf testutil.Buffer
	p := newProgress(&buf, "chat", 0, false, -1, 5*time.Millisecond)
	p.Update(512_345, "delivered 512,345  48,200 msg/s  p99 2.1 ms")
	waitFor(t, "a periodic line", func() bool { return strings.Count(buf.String(), "\n") >= 2 })
	p.Update(600_000, "delivered 600,000  50,000 msg/s  p99 2.0 ms")
	p.Finish()
	p.Finish() // a second Finish writes nothing more

	out := buf.String()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("plain output has terminal controls: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "chat  ") || !strings.Contains(l, "s  delivered 512,345  48,200 msg/s  p99 2.1 ms") &&
			!strings.Contains(l, "delivered 600,000") {
			t.Errorf("periodic line %q", l)
		}
	}
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "chat  finished after ") || !strings.HasSuffix(last, "delivered 600,000  50,000 msg/s  p99 2.0 ms") {
		t.Errorf("final line %q", last)
	}
	if strings.Count(out, "finished after") != 1 {
		t.Errorf("want one final line:\n%s", out)
	}
}

func TestProgressPlainTotal(t *testing.T) {
	var buf testutil.Buffer
	p := newProgress(&buf, "ramp", 20_000, false, -1, time.Hour)
	p.Update(5_000, "")
	p.Finish()
	// No status: the count against the total is the status.
	if got, want := buf.String(), "  25%  5,000/20,000\n"; !strings.HasSuffix(got, want) {
		t.Errorf("final line %q, want suffix %q", got, want)
	}
}

func TestProgressTTY(t *testing.T) {
	var buf testutil.Buffer
	p := newProgress(&buf, "chat", 100, true, -1, 5*time.Millisecond)
	p.Update(50, strings.Repeat("x", 200)) // longer than a terminal line
	waitFor(t, "two redraws", func() bool { return strings.Count(buf.String(), "\r") >= 2 })
	out := buf.String()
	if strings.Contains(out, "\n") {
		t.Errorf("terminal redraws must stay on one line: %q", out)
	}
	frames := strings.Split(out, "\r")[1:]
	for _, f := range frames {
		if !strings.HasSuffix(f, "\x1b[K") {
			t.Errorf("frame %q does not erase to the end of the line", f)
		}
		if n := len([]rune(strings.TrimSuffix(f, "\x1b[K"))); n >= defaultCols {
			t.Errorf("frame is %d columns, would wrap an %d-column terminal", n, defaultCols)
		}
	}
	if !strings.Contains(out, "██████████░░░░░░░░░░  50%") {
		t.Errorf("no half-full bar in %q", out)
	}
	p.Finish()
	if out := buf.String(); !strings.HasSuffix(out, "\x1b[K\n") || !strings.Contains(out, "finished after") {
		t.Errorf("final frame %q", out[strings.LastIndex(out, "\r"):])
	}
}

// NewProgress treats anything but a terminal as a log.
func TestNewProgressNotTTY(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []interface {
		Write([]byte) (int, error)
	}{f, &testutil.Buffer{}} {
		p := NewProgress(w, "x", 0)
		if p.tty || p.every != plainRedrawEvery {
			t.Errorf("%T: tty %v every %v, want plain every %v", w, p.tty, p.every, plainRedrawEvery)
		}
		p.Finish()
	}
}

func TestProgressUpdateAllocs(t *testing.T) {
	p := newProgress(&testutil.Buffer{}, "x", 0, false, -1, time.Hour)
	defer p.Finish()
	status := "delivered 1  1 msg/s"
	if n := testing.AllocsPerRun(100, func() { p.Update(1, status) }); n != 0 {
		t.Errorf("Update allocates %v times", n)
	}
}

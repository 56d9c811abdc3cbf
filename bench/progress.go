package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
)

// Redraw intervals. A terminal line redrawn 4 times a second looks live
// without flicker or measurable cost; a log (CI, a file, a pipe) gets a line
// every 5 s, enough to see a run move without burying its output.
const (
	ttyRedrawEvery   = 250 * time.Millisecond
	plainRedrawEvery = 5 * time.Second
)

// Bar geometry for the terminal line.
const (
	barWidth    = 20 // cells; leaves room for the status on an 80-column terminal
	defaultCols = 80 // when the terminal does not tell its width
)

// Progress shows a running benchmark's progress on w: on a terminal, one
// status line redrawn in place (with a bar when the total is known); on
// anything else, a plain line every few seconds. A goroutine started by
// NewProgress does the drawing; Update only records, so it is cheap and may
// be called from any goroutine. Call Finish once the run is over, to write
// the final line and stop the goroutine.
type Progress struct {
	// Immutable after construction.
	w     io.Writer
	label string
	total int64 // 0 or less: unknown
	tty   bool
	fd    int // for the terminal width; -1 when unknown
	every time.Duration
	start time.Time

	// Atomic or guarded by mu; shared with callers of Update.
	done   atomic.Int64
	mu     sync.Mutex
	status string

	stop     chan struct{} // closed by Finish; received by the draw goroutine
	stopped  chan struct{} // closed by the draw goroutine when it returns
	finishMu sync.Once
}

// NewProgress starts showing progress on w under label (the scenario name,
// say). total is what done counts towards (messages, connections, seconds…);
// 0 when unknown, and then no bar or percentage is drawn. w is treated as a
// terminal when it is an *os.File on one.
func NewProgress(w io.Writer, label string, total int64) *Progress {
	fd, tty := -1, false
	if f, ok := w.(*os.File); ok {
		fd = int(f.Fd())
		tty = term.IsTerminal(fd)
	}
	every := plainRedrawEvery
	if tty {
		every = ttyRedrawEvery
	}
	return newProgress(w, label, total, tty, fd, every)
}

// newProgress is NewProgress with the terminal choice and the interval
// given, for tests.
func newProgress(w io.Writer, label string, total int64, tty bool, fd int, every time.Duration) *Progress {
	p := &Progress{
		w:       w,
		label:   label,
		total:   total,
		tty:     tty,
		fd:      fd,
		every:   every,
		start:   time.Now(),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go p.loop()
	return p
}

// Update records how much is done and a short status for the next redraw,
// e.g. "delivered 512,345  48,200 msg/s  p99 2.1 ms". It never blocks on w
// and may be called from any goroutine, as often as wanted.
func (p *Progress) Update(done int64, status string) {
	p.done.Store(done)
	p.mu.Lock()
	p.status = status
	p.mu.Unlock()
}

// Finish stops the redraws and writes the final line with the last
// recorded progress and status. Later calls do nothing.
func (p *Progress) Finish() {
	p.finishMu.Do(func() {
		close(p.stop)
		<-p.stopped
		line := p.line(true)
		if p.tty {
			fmt.Fprintf(p.w, "\r%s\x1b[K\n", p.fit(line))
		} else {
			fmt.Fprintln(p.w, line)
		}
	})
}

// loop redraws every p.every until Finish. Owned by its goroutine.
func (p *Progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(p.every)
	defer t.Stop()
	if p.tty {
		p.draw() // show the label at once on a terminal
	}
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw()
		}
	}
}

// draw writes one frame: on a terminal the whole line in one write,
// carriage return first and erase-to-end after, so nothing flickers.
func (p *Progress) draw() {
	line := p.line(false)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.fit(line))
		return
	}
	fmt.Fprintln(p.w, line)
}

// line renders the current state: label, elapsed time, progress against
// the total when known, and the status (or the done count when there is
// no status).
func (p *Progress) line(final bool) string {
	done := p.done.Load()
	p.mu.Lock()
	status := p.status
	p.mu.Unlock()

	var b strings.Builder
	b.WriteString(p.label)
	b.WriteString("  ")
	elapsed := time.Since(p.start).Seconds()
	if final {
		fmt.Fprintf(&b, "finished after %.1fs", elapsed)
	} else {
		fmt.Fprintf(&b, "%.1fs", elapsed)
	}
	if p.total > 0 {
		frac := min(max(float64(done)/float64(p.total), 0), 1)
		b.WriteString("  ")
		if p.tty && !final {
			full := int(frac * barWidth)
			b.WriteString(strings.Repeat("█", full))
			b.WriteString(strings.Repeat("░", barWidth-full))
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%3.0f%%", 100*frac)
	}
	if status != "" {
		b.WriteString("  ")
		b.WriteString(status)
	} else if done != 0 || p.total > 0 {
		b.WriteString("  ")
		b.WriteString(formatCount(uint64(max(done, 0))))
		if p.total > 0 {
			b.WriteString("/")
			b.WriteString(formatCount(uint64(p.total)))
		}
	}
	return b.String()
}

// fit cuts line to the terminal's width less one column: a line that wraps
// can no longer be redrawn in place.
func (p *Progress) fit(line string) string {
	cols := defaultCols
	if p.fd >= 0 {
		if c, _, err := term.GetSize(p.fd); err == nil && c > 1 {
			cols = c
		}
	}
	if utf8.RuneCountInString(line) < cols {
		return line
	}
	r := []rune(line)
	return string(r[:cols-2]) + "…"
}

package preflight

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText writes r for a person: a table of the limits, what binds first
// and what it implies, the costs per connection, and how to raise each
// limit.
func WriteText(w io.Writer, r Report) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "limit\tvalue\tconnections\tbounds\t")
	for _, l := range r.Limits {
		conns := "-"
		if l.Connections >= 0 {
			conns = group(l.Connections)
		}
		mark := ""
		if l.Binding {
			mark = "<- binds first"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Setting, value(l, r.Facts.PageSize), conns, l.Scope, mark)
	}
	tw.Flush()

	c := r.Costs
	fmt.Fprintf(&b, "\n%s\n", wrap(r.Summary))
	fmt.Fprintf(&b, "\n%s\n", wrap(fmt.Sprintf("Per idle connection: %d file and %d B of server RSS (docs/BENCHMARKS.md, \"Memory per idle logged-in connection\"), %s B of kernel memory (socket, inode, file, dentry, epoll entry; measured, docs/BENCHMARKS.md \"Kernel memory per idle connection\"). Besides connections the server keeps %d files (%d open + %d headroom + a quarter); an empty server's RSS is ~%d MiB.\n",
		c.FilesPerConn, c.ServerBytes, group(c.KernelBytes), c.ReserveFiles, c.OtherFiles, fdHeadroom, c.ServerBaseBytes>>20)+
		" A client on this host costs one more file per connection, in its own process, and an ephemeral port per (source address, server address)."))

	if s := r.Facts.Sync; s != nil {
		fmt.Fprintf(&b, "\n%s\n", wrap(syncText(s, r.Facts.DiskPath)))
	}

	fmt.Fprintln(&b, "\nEach limit, and how to raise it:")
	for _, l := range r.Limits {
		fmt.Fprintf(&b, "\n%s\n", wrap(fmt.Sprintf("%s (%s): %s.", l.Setting, l.Name, l.Note)))
		for _, cmd := range l.Raise {
			fmt.Fprintf(&b, "    %s\n", cmd)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// syncText says what a durable write cost on the data folder's disk, and
// what that means for a message.
func syncText(s *Sync, path string) string {
	t := fmt.Sprintf("Durable writes on the disk of %s, %d of %d bytes each followed by fdatasync, as the server's log makes them: p50 %s, p99 %s, max %s, and %s of CPU each. Every ACCEPT follows one (sends queued together share it), so no send is accepted faster than that p50 here.",
		path, s.Count, s.Bytes, micros(s.P50), micros(s.P99), micros(s.Max), micros(s.CPU))
	if s.P50 > slowSyncMicros {
		t += fmt.Sprintf(" Over %s is slow for a messaging server: every message waits that long at least; a disk that syncs in well under a millisecond (a local SSD) is what a host wants.", micros(slowSyncMicros))
	}
	return t
}

// micros formats microseconds, as milliseconds from 1,000 up.
func micros(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.0f µs", us)
}

// WriteJSON writes r as indented JSON, with the field names the types
// document.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// textWidth is where WriteText wraps prose: a terminal's 80 columns and
// then some, since commands are not wrapped.
const textWidth = 90

// wrap breaks s between words so that no line passes textWidth.
func wrap(s string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 && n+1+len(w) > textWidth {
			b.WriteByte('\n')
			n = 0
		} else if i > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// value formats a limit's value in its unit.
func value(l Limit, page int) string {
	switch l.Unit {
	case "bytes":
		return size(l.Value)
	case "pages":
		return fmt.Sprintf("%s pages (%s)", group(l.Value), size(l.Value*int64(page)))
	}
	return group(l.Value) + " " + l.Unit
}

// size formats bytes in the largest binary unit under which they are at
// least 1.
func size(v int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(v), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", v)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// group writes n with thousands separated by commas: 19909 as "19,909".
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

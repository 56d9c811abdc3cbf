package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Formatting. Every figure carries its unit; latencies and bytes keep three
// significant digits, the precision the histograms have.

// formatCount writes n with thousands separators: 1,234,567.
func formatCount(n uint64) string {
	s := fmt.Sprint(n)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead > 0 {
		b.WriteString(s[:lead])
	}
	for i := lead; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

func formatMsgs(n uint64) string { return formatCount(n) + " msg" }

func formatConns(n int) string {
	if n < 0 {
		n = 0
	}
	return formatCount(uint64(n)) + " " + plural(n, "conn", "conns")
}

// formatNumber writes v with separators from 1,000 up and three
// significant digits below.
func formatNumber(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "−", -v
	}
	if v >= 999.5 {
		return sign + formatCount(uint64(math.Round(v)))
	}
	return sign + sig3(v)
}

// formatRate writes a rate in msg/s: whole numbers with separators from 100
// up, one decimal below.
func formatRate(v float64) string {
	if v >= 100 {
		return formatCount(uint64(math.Round(v))) + " msg/s"
	}
	return fmt.Sprintf("%.1f msg/s", v)
}

// sig3 writes v with three significant digits for v in [0, 1000).
func sig3(v float64) string {
	switch {
	case v >= 99.95:
		return fmt.Sprintf("%.0f", v)
	case v >= 9.995:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// formatLatency writes a histogram value (whole µs) in µs, ms or s.
func formatLatency(us int64) string {
	if us < 1000 {
		return fmt.Sprintf("%d µs", us)
	}
	return formatMicros(float64(us))
}

// formatMicros writes a duration given in µs, in µs, ms or s.
func formatMicros(us float64) string {
	switch {
	case us < 999.5:
		return sig3(us) + " µs"
	case us < 999_500:
		return sig3(us/1e3) + " ms"
	default:
		return sig3(us/1e6) + " s"
	}
}

// formatBytes writes a byte count (possibly fractional or negative) in B,
// KiB, MiB or GiB.
func formatBytes(b float64) string {
	sign := ""
	if b < 0 {
		sign, b = "−", -b
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1023.5 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 && b == math.Trunc(b) {
		return fmt.Sprintf("%s%.0f B", sign, b)
	}
	return sign + sig3(b) + " " + units[i]
}

func formatSeconds(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "(start time not recorded)"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// mdText escapes text for Markdown: table pipes, emphasis and link
// characters, and line breaks (a failure message must not end a table).
func mdText(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '\\', '*', '_', '`', '|', '[', ']', '<', '>', '#':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n', '\r':
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// mdCode writes s as a code span, safe inside a table cell.
func mdCode(s string) string {
	if s == "" {
		return "(empty)"
	}
	s = strings.NewReplacer("\n", " ", "\r", " ", "|", "\\|").Replace(s)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

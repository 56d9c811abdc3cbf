package top

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"charm.land/lipgloss/v2"
)

// Mark follows a value over its limit in every rendering, so that the
// plain text (--once, a pipe, a log) shows it too.
const Mark = "!"

// Styles colour a frame. The zero value draws plain text.
type Styles struct {
	title, label, over lipgloss.Style
	colour             bool
}

// Colours returns the styles of the live screen: what is over its limit in
// bold red.
func Colours() Styles {
	return Styles{
		title:  lipgloss.NewStyle().Bold(true),
		label:  lipgloss.NewStyle().Foreground(lipgloss.Color("245")),
		over:   lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("9")),
		colour: true,
	}
}

func (s Styles) render(st lipgloss.Style, text string) string {
	if !s.colour {
		return text
	}
	return st.Render(text)
}

// row is one line of the screen: a label and one cell per column.
type row struct {
	label string
	cell  func(Figures) (text string, over bool)
}

var rows = []row{
	{"state", func(f Figures) (string, bool) {
		switch {
		case len(f.Down) == f.Servers && f.Servers > 0:
			return "down", true
		case len(f.Down) > 0:
			return fmt.Sprintf("%d of %d down", len(f.Down), f.Servers), true
		case f.NotReady > 0 && f.Servers == 1:
			return "not ready", true
		case f.NotReady > 0:
			return fmt.Sprintf("%d not ready", f.NotReady), true
		}
		return "up", false
	}},
	{"connections", func(f Figures) (string, bool) { return of(count(f.Conns), count(f.ConnCap)), f.Over(FigConns) }},
	{"  pre-login", func(f Figures) (string, bool) { return count(f.PreLogin), false }},
	{"  logged in", func(f Figures) (string, bool) { return count(f.LoggedIn), false }},
	{"  closing", func(f Figures) (string, bool) { return count(f.Closing), false }},
	{"logins/s", func(f Figures) (string, bool) { return rate(f.LoginsPerSec), false }},
	{"messages in/s", func(f Figures) (string, bool) { return rate(f.InPerSec), false }},
	{"messages out/s", func(f Figures) (string, bool) { return rate(f.OutPerSec), false }},
	{"send→ACCEPT p99", func(f Figures) (string, bool) { return seconds(f.AcceptP99()), false }},
	{"shard queue (max)", func(f Figures) (string, bool) {
		return of(count(f.ShardQueue), count(f.RoutingCap)), f.Over(FigShardQueue)
	}},
	{"group queue (max)", func(f Figures) (string, bool) {
		return of(count(f.GroupQueue), count(f.RoutingCap)), f.Over(FigGroupQueue)
	}},
	{"held receipts (max)", func(f Figures) (string, bool) { return of(count(f.Held), count(f.RoutingCap)), f.Over(FigHeld) }},
	{"commit queue", func(f Figures) (string, bool) {
		return of(count(f.CommitQueue), count(f.CommitCap)), f.Over(FigCommitQueue)
	}},
	{"slow-consumer closes", func(f Figures) (string, bool) {
		if math.IsNaN(f.SlowPerSec) {
			return count(f.SlowCloses), f.Over(FigSlow)
		}
		return count(f.SlowCloses) + " +" + rate(f.SlowPerSec) + "/s", f.Over(FigSlow)
	}},
	{"store", func(f Figures) (string, bool) {
		return of(byteCount(f.StoreBytes), byteCount(f.StoreMax)), f.Over(FigStore)
	}},
	{"disk free", func(f Figures) (string, bool) {
		if math.IsNaN(f.DiskFreeShare()) {
			return byteCount(f.DiskFree), false
		}
		return fmt.Sprintf("%s %.0f%%", byteCount(f.DiskFree), 100*f.DiskFreeShare()), f.Over(FigDisk)
	}},
	{"syncs/message", func(f Figures) (string, bool) {
		v := f.SyncsPerMessage()
		if math.IsNaN(v) {
			return "–", f.Over(FigSyncs)
		}
		return fmt.Sprintf("%.2f", v), f.Over(FigSyncs)
	}},
	{"store errors", func(f Figures) (string, bool) { return count(f.StoreErrors), f.Over(FigStoreErrors) }},
}

// labelWidth fits the longest label.
const labelWidth = 22

// Render draws the frame: a title, then one row per figure with a column
// per server (the cluster's first when there are several), each value over
// its limit followed by Mark, and the reason of every server down.
func (fr Frame) Render(s Styles) string {
	cols := fr.Servers
	if fr.Cluster != nil {
		cols = append([]Figures{*fr.Cluster}, fr.Servers...)
	}
	width := make([]int, len(cols))
	cells := make([][]string, len(rows))
	overs := make([][]bool, len(rows))
	for c, f := range cols {
		width[c] = utf8.RuneCountInString(f.Addr)
		for r, rw := range rows {
			text, over := rw.cell(f)
			if over {
				text += " " + Mark
			}
			cells[r] = append(cells[r], text)
			overs[r] = append(overs[r], over)
			width[c] = max(width[c], utf8.RuneCountInString(text))
		}
	}
	var b strings.Builder
	title := "switchboard top"
	if !fr.At.IsZero() {
		title += "  " + fr.At.UTC().Format("15:04:05") + " UTC"
	}
	if fr.Every > 0 {
		title += "  every " + fr.Every.String()
	}
	b.WriteString(s.render(s.title, title))
	b.WriteString("\n\n")
	b.WriteString(pad("", labelWidth))
	for c, f := range cols {
		b.WriteString("  ")
		b.WriteString(s.render(s.title, pad(f.Addr, width[c])))
	}
	b.WriteString("\n")
	for r, rw := range rows {
		b.WriteString(s.render(s.label, pad(rw.label, labelWidth)))
		for c := range cols {
			b.WriteString("  ")
			text := pad(cells[r][c], width[c])
			if overs[r][c] {
				text = s.render(s.over, cells[r][c]) + strings.Repeat(" ", width[c]-utf8.RuneCountInString(cells[r][c]))
			}
			b.WriteString(text)
		}
		b.WriteString("\n")
	}
	for _, f := range fr.Servers {
		for _, d := range f.Down {
			b.WriteString("\n")
			b.WriteString(s.render(s.over, "down "+d))
		}
	}
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

func pad(s string, w int) string {
	return s + strings.Repeat(" ", max(0, w-utf8.RuneCountInString(s)))
}

func of(v, capacity string) string {
	if capacity == "–" {
		return v
	}
	return v + " / " + capacity
}

func count(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func rate(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func seconds(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 1e-3:
		return fmt.Sprintf("%.0fµs", v*1e6)
	case v < 1:
		return fmt.Sprintf("%.1fms", v*1e3)
	}
	return fmt.Sprintf("%.2fs", v)
}

func byteCount(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	const unit = 1024
	if v < unit {
		return fmt.Sprintf("%.0f B", v)
	}
	div, exp := float64(unit), 0
	for n := v / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v/div, "KMGTP"[exp])
}

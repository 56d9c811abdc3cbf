package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart files, relative to the report folder; report.md links them by these names.
const (
	latencyChartFile    = "latency.png"
	throughputChartFile = "throughput.png"
	memoryChartFile     = "memory.png"
	sweepChartFile      = "sweep.png"
)

// Chart geometry: 20 × 11 cm at 150 dpi is about 1180 × 650 px, wide enough
// for a laptop screen or a rendered Markdown page without the text shrinking
// below the default 12 pt.
const (
	chartWidth  = 20 * vg.Centimeter
	chartHeight = 11 * vg.Centimeter
	chartDPI    = 150
)

// curvePointsPerDecade is how finely the percentile curve is sampled on its
// log axis: 20 a decade draws a smooth curve from a few hundred look-ups.
const curvePointsPerDecade = 20

// maxCurveDecades caps the percentile axis at 99.9999%: beyond that even a
// billion samples leave too few values per step to mean anything.
const maxCurveDecades = 6

// seriesColors are the line colours, in order: distinct in print and for the
// common forms of colour blindness (Okabe–Ito palette).
var seriesColors = []color.Color{
	color.RGBA{R: 0x00, G: 0x72, B: 0xB2, A: 0xFF}, // blue
	color.RGBA{R: 0xD5, G: 0x5E, B: 0x00, A: 0xFF}, // vermillion
	color.RGBA{R: 0x00, G: 0x9E, B: 0x73, A: 0xFF}, // green
	color.RGBA{R: 0xCC, G: 0x79, B: 0xA7, A: 0xFF}, // purple
	color.RGBA{R: 0xE6, G: 0x9F, B: 0x00, A: 0xFF}, // orange
	color.RGBA{R: 0x56, G: 0xB4, B: 0xE9, A: 0xFF}, // sky blue
	color.RGBA{R: 0x00, G: 0x00, B: 0x00, A: 0xFF}, // black
	color.RGBA{R: 0xF0, G: 0xE4, B: 0x42, A: 0xFF}, // yellow, last: faint on white
}

// namedHist is one of a Result's histograms with the names the report uses.
type namedHist struct {
	title string // for people: "send → ack"
	key   string // for machines: "send_to_ack"
	h     *hdrhistogram.Histogram
}

// histograms returns the Result's histograms that hold at least one value,
// in report order.
func histograms(r *Result) []namedHist {
	all := []namedHist{
		{"send → ack", "send_to_ack", r.SendToAck},
		{"send → deliver", "send_to_deliver", r.SendToDeliver},
		{"login", "login", r.LoginLatency},
		{"generator lag", "generator_lag", r.GeneratorLag},
	}
	var out []namedHist
	for _, nh := range all {
		if nh.h != nil && nh.h.TotalCount() > 0 {
			out = append(out, nh)
		}
	}
	return out
}

// newChart returns a plot with the report's common look.
func newChart(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(6)
	p.Legend.YOffs = -vg.Points(4)
	p.X.Tick.Marker = countTicks{}
	p.Y.Tick.Marker = countTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Horizontal.Color = color.Gray{Y: 225}
	p.Add(grid)
	return p
}

// countTicks are the default ticks with thousands separators on whole
// numbers: 20,000 connections reads faster than 20000.
type countTicks struct{}

func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" && t.Value >= 1000 && t.Value == math.Trunc(t.Value) {
			ticks[i].Label = formatCount(uint64(t.Value))
		}
	}
	return ticks
}

// decadeTicks labels an axis that holds log10 of milliseconds: a major
// tick at each power of ten, minor ticks at 2…9 times it. The charts plot
// log10 values on a linear axis instead of using plot.LogScale, whose axis
// label padding assumes a linear scale and leaves a gap under the title.
type decadeTicks struct{}

func (decadeTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for d := math.Floor(lo); d <= math.Ceil(hi); d++ {
		for m := 1.0; m < 10; m++ {
			v := d + math.Log10(m)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 {
				t.Label = strconv.FormatFloat(math.Pow(10, d), 'f', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// addLine adds a coloured line (and its legend entry) for series i.
func addLine(p *plot.Plot, i int, name string, xys plotter.XYs, withPoints bool) error {
	return addStyledLine(p, i, name, xys, withPoints, false)
}

// addStyledLine is addLine with a choice of dashes, which mark a baseline
// run drawn beside the measured one in the same colour.
func addStyledLine(p *plot.Plot, i int, name string, xys plotter.XYs, withPoints, dashed bool) error {
	line, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	c := seriesColors[i%len(seriesColors)]
	line.Color = c
	line.Width = vg.Points(2)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		line.Width = vg.Points(1.5)
	}
	p.Add(line)
	if !withPoints {
		p.Legend.Add(name, line)
		return nil
	}
	pts, err := plotter.NewScatter(xys)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	pts.Color = c
	pts.Shape = draw.CircleGlyph{}
	pts.Radius = vg.Points(3)
	p.Add(pts)
	p.Legend.Add(name, line, pts)
	return nil
}

// savePNG renders p into path at the report's size and dpi dots an inch.
func savePNG(p *plot.Plot, path string, dpi int) error {
	return savePNGStack([]*plot.Plot{p}, path, dpi)
}

// savePNGStack renders plots one above the other into path, each at the
// report's size, their axes aligned.
func savePNGStack(plots []*plot.Plot, path string, dpi int) error {
	c := vgimg.NewWith(vgimg.UseWH(chartWidth, chartHeight*vg.Length(len(plots))), vgimg.UseDPI(dpi))
	canvases := []draw.Canvas{draw.New(c)}
	if len(plots) > 1 {
		rows := make([][]*plot.Plot, len(plots))
		for i, p := range plots {
			rows[i] = []*plot.Plot{p}
		}
		canvases = canvases[:0]
		for _, row := range plot.Align(rows, draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Points(12)}, draw.New(c)) {
			canvases = append(canvases, row[0])
		}
	}
	for i, p := range plots {
		dc := canvases[i]
		if p.Legend.Top {
			// gonum places a top legend against the axes' top, which can sit
			// above the data area's (padding for tick labels); align it with
			// the data so it never overlaps the title.
			top := dc.Max.Y
			if p.Title.Text != "" {
				top -= p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding
			}
			p.Legend.YOffs += p.DataCanvas(dc).Max.Y - top
		}
		p.Draw(dc)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// percentileCurve samples h for an HdrHistogram-style plot: x is
// log10(1/(1−q)), so 90% sits at 1, 99% at 2, 99.9% at 3; y is in
// milliseconds. It stops where the samples run out (1/(1−q) = count: the
// last percentile the histogram can tell apart) and ends on the maximum.
func percentileCurve(h *hdrhistogram.Histogram) plotter.XYs {
	n := h.TotalCount()
	limit := math.Min(float64(n), math.Pow(10, maxCurveDecades))
	var xs, qs []float64
	for k := 0; ; k++ {
		x := math.Pow(10, float64(k)/curvePointsPerDecade)
		if x > limit {
			break
		}
		xs = append(xs, x)
		qs = append(qs, 100*(1-1/x))
	}
	vals := h.ValueAtPercentilesSlice(qs)
	xys := make(plotter.XYs, 0, len(xs)+1)
	for i, x := range xs {
		xys = append(xys, plotter.XY{X: math.Log10(x), Y: float64(vals[i]) / 1000})
	}
	// The maximum is the 1/n-th tail; draw it where the axis has room for it.
	if float64(n) <= limit && (len(xs) == 0 || xs[len(xs)-1] < limit) {
		xys = append(xys, plotter.XY{X: math.Log10(limit), Y: float64(h.Max()) / 1000})
	} else if float64(n) <= limit {
		xys[len(xys)-1].Y = float64(h.Max()) / 1000
	}
	return xys
}

// percentileTicks labels the log10(1/(1−q)) axis in percentiles, one tick
// a decade.
func percentileTicks(decades int) plot.ConstantTicks {
	ticks := plot.ConstantTicks{{Value: 0, Label: "0%"}}
	for d := 1; d <= decades; d++ {
		var label string // 90%, 99%, 99.9%, 99.99% …
		switch d {
		case 1:
			label = "90%"
		case 2:
			label = "99%"
		default:
			label = "99." + strings.Repeat("9", d-2) + "%"
		}
		ticks = append(ticks, plot.Tick{Value: float64(d), Label: label})
	}
	return ticks
}

// curve is one percentile curve on the latency chart.
type curve struct {
	name   string
	h      *hdrhistogram.Histogram
	color  int
	dashed bool // the baseline run's
}

// latencyCurves returns the curves of the latency chart: every non-empty
// histogram, each with the baseline run's matching one; in a sweep, one
// send → deliver curve per step instead, its latencies being per rate.
func latencyCurves(r *Result) []curve {
	var curves []curve
	if r.Sweep != nil {
		for i, s := range r.Sweep.Steps {
			if s.deliver != nil && s.deliver.TotalCount() > 0 {
				curves = append(curves, curve{name: "send → deliver at " + formatRate(s.Offered), h: s.deliver, color: i})
			}
		}
		return curves
	}
	for i, nh := range histograms(r) {
		curves = append(curves, curve{name: nh.title, h: nh.h, color: i})
		if r.Baseline == nil {
			continue
		}
		for _, bh := range histograms(r.Baseline) {
			if bh.key == nh.key {
				curves = append(curves, curve{name: nh.title + ", baseline", h: bh.h, color: i, dashed: true})
			}
		}
	}
	return curves
}

// writeLatencyChart draws latencyCurves as percentile curves, a baseline
// run's dashed in the colour of the curve it matches. It reports false when
// there is nothing to draw.
func writeLatencyChart(path string, r *Result, dpi int) (bool, error) {
	curves := latencyCurves(r)
	if len(curves) == 0 {
		return false, nil
	}
	var maxCount int64
	minP50, maxMax, minMin := math.Inf(1), 0.0, math.Inf(1)
	for _, nh := range curves {
		maxCount = max(maxCount, nh.h.TotalCount())
		minP50 = math.Min(minP50, float64(nh.h.ValueAtPercentile(50)))
		maxMax = math.Max(maxMax, float64(nh.h.Max()))
		minMin = math.Min(minMin, math.Max(float64(nh.h.Min()), 1))
	}
	decades := int(math.Ceil(math.Log10(float64(maxCount))))
	decades = min(max(decades, 2), maxCurveDecades)

	// A tail a hundred times the median squashes the body of a linear plot
	// into the floor; switch to a log axis then, and say so on the label.
	logY := maxMax > 100*math.Max(minP50, 1)
	yLabel := "latency (ms)"
	if logY {
		yLabel = "latency (ms, log scale)"
	}
	p := newChart("Latency by percentile — "+r.Scenario, "percentile (log scale of 1/(1−p))", yLabel)
	// The top-left corner of a percentile plot is the empty one (the curves
	// start low and rise to the right); headroom above the highest value
	// keeps the legend clear of the tails.
	p.Legend.Top, p.Legend.Left = true, true
	p.X.Tick.Marker = percentileTicks(decades)
	p.X.Min, p.X.Max = 0, float64(decades)
	// Keep the top share f of the height free for the legend, a line of
	// which takes about 6% of it.
	f := math.Min(0.06*float64(len(curves)+1), 0.5)
	top := math.Max(maxMax, 1) / 1000
	if logY {
		p.Y.Tick.Marker = decadeTicks{}
		bottom := math.Log10(minMin / 1000)
		p.Y.Min = bottom
		p.Y.Max = (math.Log10(top) - f*bottom) / (1 - f)
	} else {
		p.Y.Min = 0
		p.Y.Max = top / (1 - f)
	}
	for _, c := range curves {
		xys := percentileCurve(c.h)
		if logY {
			for j := range xys {
				xys[j].Y = math.Log10(math.Max(xys[j].Y, 0.001)) // a 0 µs sample has no place on a log axis
			}
		}
		name := fmt.Sprintf("%s (%s samples)", c.name, formatCount(uint64(c.h.TotalCount())))
		if err := addStyledLine(p, c.color, name, xys, false, c.dashed); err != nil {
			return false, err
		}
	}
	return true, savePNG(p, path, dpi)
}

// writeThroughputChart draws sent and delivered messages a second from the
// timeline. It reports false when there is nothing to draw.
func writeThroughputChart(path string, r *Result, dpi int) (bool, error) {
	if len(r.Timeline) == 0 {
		return false, nil
	}
	sent := make(plotter.XYs, len(r.Timeline))
	delivered := make(plotter.XYs, len(r.Timeline))
	var top float64
	for i, s := range r.Timeline {
		t := s.At.Seconds()
		sent[i] = plotter.XY{X: t, Y: float64(s.Sent)}
		delivered[i] = plotter.XY{X: t, Y: float64(s.Delivered)}
		top = math.Max(top, math.Max(float64(s.Sent), float64(s.Delivered)))
	}
	p := newChart("Throughput over time — "+r.Scenario, "time since the measured phase began (s)", "messages per second (msg/s)")
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(8)
	p.X.Min = 0
	p.Y.Min = 0
	p.Y.Max = math.Max(top*1.2, 1) // room for the legend above the lines
	withPoints := len(r.Timeline) <= 30
	if err := addLine(p, 0, "sent", sent, withPoints); err != nil {
		return false, err
	}
	if err := addLine(p, 1, "delivered", delivered, withPoints); err != nil {
		return false, err
	}
	if b := r.Baseline; b != nil && len(b.Timeline) > 0 {
		xys := make(plotter.XYs, len(b.Timeline))
		for i, s := range b.Timeline {
			xys[i] = plotter.XY{X: s.At.Seconds(), Y: float64(s.Delivered)}
			top = math.Max(top, float64(s.Delivered))
		}
		p.Y.Max = math.Max(top*1.2, 1)
		if err := addStyledLine(p, 1, "delivered, baseline", xys, false, true); err != nil {
			return false, err
		}
	}
	return true, savePNG(p, path, dpi)
}

// writeMemoryChart draws the server's RSS (and heap in use, when known)
// against connections, one labelled point per MemPoint in the order taken.
// It reports false when there are fewer than two points.
func writeMemoryChart(path string, r *Result, dpi int) (bool, error) {
	if len(r.Memory) < 2 {
		return false, nil
	}
	rss := make(plotter.XYs, len(r.Memory))
	var heap plotter.XYs
	labels := make([]string, len(r.Memory))
	var top, right float64
	for i, m := range r.Memory {
		rss[i] = plotter.XY{X: float64(m.Conns), Y: mib(m.RSS)}
		labels[i] = m.Label
		top = math.Max(top, mib(m.RSS))
		right = math.Max(right, float64(m.Conns))
		if m.HeapInuse > 0 {
			heap = append(heap, plotter.XY{X: float64(m.Conns), Y: mib(m.HeapInuse)})
		}
	}
	p := newChart("Server memory against connections — "+r.Scenario, "server connections", "server memory (MiB)")
	p.Y.Min = 0
	p.Y.Max = math.Max(top*1.2, 1)
	p.X.Min = 0
	p.X.Max = math.Max(right*1.15, 1) // room for the point labels on the right
	if err := addLine(p, 0, "RSS", rss, true); err != nil {
		return false, err
	}
	if len(heap) > 0 {
		if err := addLine(p, 1, "heap in use", heap, true); err != nil {
			return false, err
		}
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: rss, Labels: labels})
	if err != nil {
		return false, err
	}
	lbl.Offset = vg.Point{X: vg.Points(5), Y: vg.Points(5)}
	p.Add(lbl)
	return true, savePNG(p, path, dpi)
}

// mib converts bytes to MiB for the charts.
func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// writeSweepChart draws a sweep's steps against their offered rate: above,
// send → deliver p50, p99 and p99.9 with the p99 target; below, the
// server's CPU per delivered message. Both rate axes are logarithmic, the
// steps' rates marked. It reports false when no step completed.
func writeSweepChart(path string, r *Result, dpi int) (bool, error) {
	sw := r.Sweep
	if sw == nil {
		return false, nil
	}
	var steps []SweepStep
	for _, s := range sw.Steps {
		if s.SendToDeliver.Count > 0 {
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 {
		return false, nil
	}
	const xLabel = "offered rate (msg/s, log scale)"
	var ticks plot.ConstantTicks
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range steps {
		x := math.Log10(s.Offered)
		ticks = append(ticks, plot.Tick{Value: x, Label: strings.TrimSuffix(formatRate(s.Offered), " msg/s")})
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	// A margin either side, so the end points and their labels are not on the frame.
	pad := math.Max((hi-lo)*0.06, 0.1)
	target := float64(sw.TargetP99.Microseconds()) / 1000

	lat := newChart("Send → deliver latency against offered rate — sweep", xLabel, "latency (ms, log scale)")
	lat.X.Tick.Marker = ticks
	lat.X.Min, lat.X.Max = lo-pad, hi+pad
	lat.Y.Tick.Marker = decadeTicks{}
	bottom, top := math.Inf(1), target
	series := []struct {
		name string
		at   func(HistSummary) int64
	}{
		{"p50", func(h HistSummary) int64 { return h.P50 }},
		{"p99", func(h HistSummary) int64 { return h.P99 }},
		{"p99.9", func(h HistSummary) int64 { return h.P999 }},
	}
	for i, se := range series {
		xys := make(plotter.XYs, len(steps))
		for j, s := range steps {
			ms := math.Max(float64(se.at(s.SendToDeliver)), 1) / 1000
			xys[j] = plotter.XY{X: math.Log10(s.Offered), Y: math.Log10(ms)}
			bottom, top = math.Min(bottom, ms), math.Max(top, ms)
		}
		if err := addLine(lat, i, se.name, xys, true); err != nil {
			return false, err
		}
	}
	tl := plotter.XYs{{X: lat.X.Min, Y: math.Log10(target)}, {X: lat.X.Max, Y: math.Log10(target)}}
	if err := addStyledLine(lat, 3, "target: p99 < "+formatMicros(float64(sw.TargetP99.Microseconds())), tl, false, true); err != nil {
		return false, err
	}
	// A decade below the lowest value and room for the legend above the highest.
	lat.Y.Min = math.Floor(math.Log10(math.Min(bottom, target))) - 0.2
	lat.Y.Max = math.Log10(top) + 0.3*(math.Log10(top)-lat.Y.Min) + 0.2

	cpu := newChart("Server CPU per delivered message against offered rate — sweep", xLabel, "server CPU (µs per message)")
	cpu.X.Tick.Marker = ticks
	cpu.X.Min, cpu.X.Max = lo-pad, hi+pad
	cpu.Legend.Left = false
	cpu.Legend.XOffs = -vg.Points(8)
	var cxys plotter.XYs
	var cmax float64
	for _, s := range steps {
		if s.ServerCPUPerMsgUs != nil {
			cxys = append(cxys, plotter.XY{X: math.Log10(s.Offered), Y: *s.ServerCPUPerMsgUs})
			cmax = math.Max(cmax, *s.ServerCPUPerMsgUs)
		}
	}
	cpu.Y.Min, cpu.Y.Max = 0, math.Max(cmax*1.25, 1)
	if len(cxys) > 0 {
		if err := addLine(cpu, 0, "server CPU per delivered message", cxys, true); err != nil {
			return false, err
		}
	} else {
		cpu.Title.Text += " (not measured)"
	}
	return true, savePNGStack([]*plot.Plot{lat, cpu}, path, dpi)
}

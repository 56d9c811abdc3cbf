package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
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
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Horizontal.Color = color.Gray{Y: 225}
	p.Add(grid)
	return p
}

// addLine adds a coloured line (and its legend entry) for series i.
func addLine(p *plot.Plot, i int, name string, xys plotter.XYs, withPoints bool) error {
	line, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	c := seriesColors[i%len(seriesColors)]
	line.Color = c
	line.Width = vg.Points(2)
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

// savePNG renders p into path at the report's size and resolution.
func savePNG(p *plot.Plot, path string) error {
	c := vgimg.NewWith(vgimg.UseWH(chartWidth, chartHeight), vgimg.UseDPI(chartDPI))
	p.Draw(draw.New(c))
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
// 1/(1−q), so 90% sits at 10, 99% at 100, 99.9% at 1000; y is in
// milliseconds. It stops where the samples run out (x = count: the last
// percentile the histogram can tell apart) and ends on the maximum.
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
		xys = append(xys, plotter.XY{X: x, Y: float64(vals[i]) / 1000})
	}
	// The maximum is the 1/n-th tail; draw it where the axis has room for it.
	if float64(n) <= limit && (len(xs) == 0 || xs[len(xs)-1] < limit) {
		xys = append(xys, plotter.XY{X: limit, Y: float64(h.Max()) / 1000})
	} else if float64(n) <= limit {
		xys[len(xys)-1].Y = float64(h.Max()) / 1000
	}
	return xys
}

// percentileTicks labels the 1/(1−q) axis in percentiles, one tick a decade.
func percentileTicks(decades int) plot.ConstantTicks {
	ticks := plot.ConstantTicks{{Value: 1, Label: "0%"}}
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
		ticks = append(ticks, plot.Tick{Value: math.Pow(10, float64(d)), Label: label})
	}
	return ticks
}

// writeLatencyChart draws every non-empty histogram as a percentile curve.
// It reports false when there is nothing to draw.
func writeLatencyChart(path string, r *Result) (bool, error) {
	hs := histograms(r)
	if len(hs) == 0 {
		return false, nil
	}
	var maxCount int64
	minP50, maxMax := math.Inf(1), 0.0
	for _, nh := range hs {
		maxCount = max(maxCount, nh.h.TotalCount())
		minP50 = math.Min(minP50, float64(nh.h.ValueAtPercentile(50)))
		maxMax = math.Max(maxMax, float64(nh.h.Max()))
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
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = percentileTicks(decades)
	p.X.Min, p.X.Max = 1, math.Pow(10, float64(decades))
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	} else {
		p.Y.Min = 0
	}
	for i, nh := range hs {
		xys := percentileCurve(nh.h)
		if logY {
			for j := range xys {
				xys[j].Y = math.Max(xys[j].Y, 0.001) // a 0 µs sample has no place on a log axis
			}
		}
		name := fmt.Sprintf("%s (%s samples)", nh.title, formatCount(uint64(nh.h.TotalCount())))
		if err := addLine(p, i, name, xys, false); err != nil {
			return false, err
		}
	}
	// Room above the curves for the legend.
	if !logY {
		p.Y.Max = maxMax / 1000 * 1.1
	}
	return true, savePNG(p, path)
}

// writeThroughputChart draws sent and delivered messages a second from the
// timeline. It reports false when there is nothing to draw.
func writeThroughputChart(path string, r *Result) (bool, error) {
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
	p.Y.Min = 0
	p.Y.Max = math.Max(top*1.2, 1) // room for the legend above the lines
	withPoints := len(r.Timeline) <= 30
	if err := addLine(p, 0, "sent", sent, withPoints); err != nil {
		return false, err
	}
	if err := addLine(p, 1, "delivered", delivered, withPoints); err != nil {
		return false, err
	}
	return true, savePNG(p, path)
}

// writeMemoryChart draws the server's RSS (and heap in use, when known)
// against connections, one labelled point per MemPoint in the order taken.
// It reports false when there are fewer than two points.
func writeMemoryChart(path string, r *Result) (bool, error) {
	if len(r.Memory) < 2 {
		return false, nil
	}
	rss := make(plotter.XYs, len(r.Memory))
	var heap plotter.XYs
	labels := make([]string, len(r.Memory))
	var top float64
	for i, m := range r.Memory {
		rss[i] = plotter.XY{X: float64(m.Conns), Y: mib(m.RSS)}
		labels[i] = m.Label
		top = math.Max(top, mib(m.RSS))
		if m.HeapInuse > 0 {
			heap = append(heap, plotter.XY{X: float64(m.Conns), Y: mib(m.HeapInuse)})
		}
	}
	p := newChart("Server memory against connections — "+r.Scenario, "server connections", "server memory (MiB)")
	p.Y.Min = 0
	p.Y.Max = math.Max(top*1.2, 1)
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
	return true, savePNG(p, path)
}

// mib converts bytes to MiB for the charts.
func mib(b uint64) float64 { return float64(b) / (1 << 20) }

package report

import (
	"fmt"
	"math"
	"strings"

	"github.com/heraldws/herald/benchmarks/internal/histo"
)

// Colors of the servers, herald first and strongest.
var palette = map[string]string{
	"herald":  "#d9480f",
	"uws":     "#1971c2",
	"nbio":    "#2f9e44",
	"gws":     "#7048e8",
	"gorilla": "#868e96",
	"ws":      "#e8a200",
}

func color(impl string, i int) string {
	if c, ok := palette[impl]; ok {
		return c
	}
	extra := []string{"#c2255c", "#0c8599", "#5c940d", "#495057"}
	return extra[i%len(extra)]
}

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, args ...any) { fmt.Fprintf(&b.Builder, format, args...) }

func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}

func header(b *svgBuf, w, h int, title, subtitle string) {
	b.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif">`+"\n", w, h, w, h)
	b.f(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	b.f(`<text x="%d" y="28" font-size="18" font-weight="bold" fill="#212529">%s</text>`+"\n", 20, esc(title))
	if subtitle != "" {
		b.f(`<text x="%d" y="48" font-size="12" fill="#495057">%s</text>`+"\n", 20, esc(subtitle))
	}
}

// niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// Human formats a number with k/M suffixes.
func Human(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "–"
	case a >= 1e6:
		return trimZero(fmt.Sprintf("%.2f", v/1e6)) + "M"
	case a >= 1e4:
		return trimZero(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return trimZero(fmt.Sprintf("%.1f", v))
	default:
		return trimZero(fmt.Sprintf("%.2f", v))
	}
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// Series is one bar per group for one server.
type Series struct {
	Name   string
	Values []float64 // per group; NaN: no bar
	Notes  []string  // per group: shown instead of a missing bar
}

// BarChart draws grouped horizontal bars: one block per group, one bar per
// series, with the value at the end of each bar.
func BarChart(title, subtitle, unit string, groups []string, series []Series) string {
	const w, left, right, barH, gap, groupGap = 860, 150, 110, 18, 4, 22
	top := 70
	n := len(series)
	groupH := n*(barH+gap) + groupGap
	if len(groups) > 1 {
		groupH += barH + gap // the group's title row
	}
	h := top + len(groups)*groupH + 60
	var b svgBuf
	header(&b, w, h, title, subtitle)
	maxV := 0.0
	for _, s := range series {
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				maxV = max(maxV, v)
			}
		}
	}
	maxV = niceMax(maxV)
	plotW := float64(w - left - right)
	bottom := top + len(groups)*groupH
	for i := 0; i <= 5; i++ {
		x := float64(left) + plotW*float64(i)/5
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e9ecef"/>`+"\n", x, top-6, x, bottom-groupGap+4)
		b.f(`<text x="%.1f" y="%d" font-size="11" fill="#868e96" text-anchor="middle">%s</text>`+"\n", x, bottom-groupGap+18, Human(maxV*float64(i)/5))
	}
	b.f(`<text x="%.1f" y="%d" font-size="12" fill="#495057" text-anchor="middle">%s</text>`+"\n", float64(left)+plotW/2, bottom-groupGap+36, esc(unit))
	for g, name := range groups {
		y0 := top + g*groupH
		if len(groups) > 1 {
			b.f(`<text x="%d" y="%d" font-size="13" font-weight="bold" fill="#212529">%s</text>`+"\n", 12, y0+barH-4, esc(name))
		}
		for i, s := range series {
			y := y0 + i*(barH+gap)
			if len(groups) > 1 {
				y += barH + gap
			}
			label := s.Name
			b.f(`<text x="%d" y="%d" font-size="12" fill="#343a40" text-anchor="end">%s</text>`+"\n", left-8, y+barH-5, esc(label))
			v := math.NaN()
			if g < len(s.Values) {
				v = s.Values[g]
			}
			if math.IsNaN(v) {
				note := "not measured"
				if g < len(s.Notes) && s.Notes[g] != "" {
					note = s.Notes[g]
				}
				if len(note) > 80 {
					note = note[:77] + "..."
				}
				b.f(`<text x="%d" y="%d" font-size="11" fill="#adb5bd" font-style="italic">%s</text>`+"\n", left+4, y+barH-5, esc(note))
				continue
			}
			bw := plotW * v / maxV
			weight := ""
			if s.Name == "herald" {
				weight = ` font-weight="bold"`
			}
			b.f(`<rect x="%d" y="%d" width="%.1f" height="%d" rx="2" fill="%s"/>`+"\n", left, y, math.Max(bw, 1), barH, color(s.Name, i))
			b.f(`<text x="%.1f" y="%d" font-size="12" fill="#212529"%s>%s</text>`+"\n", float64(left)+bw+5, y+barH-5, weight, esc(Human(v)))
		}
	}
	b.f("</svg>\n")
	return b.String()
}

// Line is one latency distribution.
type Line struct {
	Name string
	CDF  []histo.CDFPoint
}

// CDFChart plots latency distributions: latency on a log x axis, the
// percentile on a "nines" y axis (0, 90, 99, 99.9, 99.99 %) so the tail is
// as visible as the median.
func CDFChart(title, subtitle string, lines []Line) string {
	const w, h, left, right, top, bottom = 860, 480, 80, 150, 70, 60
	var b svgBuf
	header(&b, w, h, title, subtitle)
	minV, maxV := math.Inf(1), 0.0
	for _, l := range lines {
		for _, p := range l.CDF {
			if p.ValueUS > 0 {
				minV = math.Min(minV, p.ValueUS)
			}
			maxV = math.Max(maxV, p.ValueUS)
		}
	}
	if maxV == 0 {
		b.f(`<text x="%d" y="%d" font-size="14" fill="#868e96">no samples</text></svg>`+"\n", left, top+40)
		return b.String()
	}
	lo := math.Pow(10, math.Floor(math.Log10(math.Max(minV, 1))))
	hi := math.Pow(10, math.Ceil(math.Log10(maxV*1.01)))
	if hi <= lo {
		hi = lo * 10
	}
	const maxNines = 5.0
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	xOf := func(v float64) float64 {
		v = math.Max(v, lo)
		return float64(left) + pw*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	yOf := func(q float64) float64 {
		n := maxNines
		if q < 1 {
			n = math.Min(-math.Log10(1-q), maxNines)
		}
		return float64(top) + ph*(1-n/maxNines)
	}
	for d := lo; d <= hi*1.001; d *= 10 {
		x := xOf(d)
		b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e9ecef"/>`+"\n", x, top, x, h-bottom)
		b.f(`<text x="%.1f" y="%d" font-size="11" fill="#868e96" text-anchor="middle">%s</text>`+"\n", x, h-bottom+16, latencyLabel(d))
	}
	for n, label := range []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"} {
		y := float64(top) + ph*(1-float64(n)/maxNines)
		b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e9ecef"/>`+"\n", left, y, w-right, y)
		b.f(`<text x="%d" y="%.1f" font-size="11" fill="#868e96" text-anchor="end">%s</text>`+"\n", left-6, y+4, label)
	}
	b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#adb5bd" stroke-dasharray="3,3"/>`+"\n", float64(left), int(yOf(0.5)), float64(w-right), int(yOf(0.5)))
	b.f(`<text x="%d" y="%.1f" font-size="10" fill="#adb5bd" text-anchor="end">median</text>`+"\n", w-right-4, yOf(0.5)-3)
	b.f(`<text x="%.1f" y="%d" font-size="12" fill="#495057" text-anchor="middle">latency (log scale)</text>`+"\n", float64(left)+pw/2, h-bottom+36)
	b.f(`<text x="18" y="%.1f" font-size="12" fill="#495057" transform="rotate(-90 18 %.1f)" text-anchor="middle">percentile of messages at or below</text>`+"\n", float64(top)+ph/2, float64(top)+ph/2)
	for i, l := range lines {
		if len(l.CDF) == 0 {
			continue
		}
		var pts []string
		for _, p := range l.CDF {
			if p.Quantile >= 1 {
				p.Quantile = 1 - math.Pow(10, -maxNines)
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(p.ValueUS), yOf(p.Quantile)))
		}
		width := 2.0
		if l.Name == "herald" {
			width = 3.5
		}
		b.f(`<polyline fill="none" stroke="%s" stroke-width="%.1f" stroke-linejoin="round" points="%s"/>`+"\n", color(l.Name, i), width, strings.Join(pts, " "))
		ly := top + 10 + i*20
		b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", w-right+14, ly, w-right+34, ly, color(l.Name, i))
		b.f(`<text x="%d" y="%d" font-size="12" fill="#212529">%s</text>`+"\n", w-right+40, ly+4, esc(l.Name))
	}
	b.f("</svg>\n")
	return b.String()
}

func latencyLabel(us float64) string {
	switch {
	case us >= 1e6:
		return trimZero(fmt.Sprintf("%g", us/1e6)) + " s"
	case us >= 1e3:
		return trimZero(fmt.Sprintf("%g", us/1e3)) + " ms"
	default:
		return trimZero(fmt.Sprintf("%g", us)) + " µs"
	}
}

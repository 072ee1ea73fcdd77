package report

import (
	"fmt"
	"math"
	"strings"
)

// TimeLine is one series of a time chart: values over seconds since the
// start of the run. A NaN value breaks the line.
type TimeLine struct {
	Name   string
	Color  string // "" picks one
	T, V   []float64
	Dashed bool // a reference (a budget, a target), drawn thin and dashed
}

// Panel is one chart of a TimeChart with its own y axis from zero.
type Panel struct {
	Title string
	Unit  string // the y axis
	Lines []TimeLine
}

// Mark is a labelled moment drawn across every panel (a phase starts).
type Mark struct {
	T     float64
	Label string
}

var lineColors = []string{"#d9480f", "#1971c2", "#2f9e44", "#7048e8", "#e8a200", "#c2255c", "#0c8599", "#495057"}

// TimeChart draws panels stacked over one time axis (seconds, described by
// xLabel), each with its own y axis and legend.
func TimeChart(title, subtitle, xLabel string, panels []Panel, marks []Mark) string {
	const w, left, right, top, panelH, gap, bottom = 900, 80, 190, 70, 200, 50, 50
	h := top + len(panels)*(panelH+gap) - gap + bottom
	var b svgBuf
	header(&b, w, h, title, subtitle)
	t0, t1 := math.Inf(1), math.Inf(-1)
	for _, p := range panels {
		for _, l := range p.Lines {
			for _, t := range l.T {
				t0, t1 = math.Min(t0, t), math.Max(t1, t)
			}
		}
	}
	if math.IsInf(t0, 0) {
		b.f(`<text x="%d" y="%d" font-size="14" fill="#868e96">no samples</text></svg>`+"\n", left, top+40)
		return b.String()
	}
	t0 = math.Min(t0, 0)
	step := niceMax((t1 - t0) / 10)
	t0 = math.Floor(t0/step) * step
	t1 = math.Max(math.Ceil(t1/step)*step, t0+step)
	pw := float64(w - left - right)
	xOf := func(t float64) float64 { return float64(left) + pw*(t-t0)/(t1-t0) }
	for i, p := range panels {
		y0 := top + i*(panelH+gap)
		maxV := 0.0
		for _, l := range p.Lines {
			for _, v := range l.V {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					maxV = math.Max(maxV, v)
				}
			}
		}
		maxV = niceMax(maxV * 1.05)
		yOf := func(v float64) float64 { return float64(y0+panelH) - float64(panelH)*v/maxV }
		b.f(`<text x="%d" y="%d" font-size="13" font-weight="bold" fill="#212529">%s</text>`+"\n", left, y0-8, esc(p.Title))
		for k := 0; k <= 4; k++ {
			v := maxV * float64(k) / 4
			y := yOf(v)
			b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e9ecef"/>`+"\n", left, y, w-right, y)
			b.f(`<text x="%d" y="%.1f" font-size="11" fill="#868e96" text-anchor="end">%s</text>`+"\n", left-6, y+4, Human(v))
		}
		b.f(`<text x="16" y="%d" font-size="11" fill="#495057" transform="rotate(-90 16 %d)" text-anchor="middle">%s</text>`+"\n",
			y0+panelH/2, y0+panelH/2, esc(p.Unit))
		for t := t0; t <= t1+step/2; t += step {
			x := xOf(t)
			b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#f1f3f5"/>`+"\n", x, y0, x, y0+panelH)
			if i == len(panels)-1 {
				b.f(`<text x="%.1f" y="%d" font-size="11" fill="#868e96" text-anchor="middle">%s</text>`+"\n", x, y0+panelH+16, Human(t))
			}
		}
		for _, m := range marks {
			x := xOf(m.T)
			b.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#adb5bd" stroke-dasharray="4,3"/>`+"\n", x, y0, x, y0+panelH)
			if i == 0 {
				b.f(`<text x="%.1f" y="%d" font-size="10" fill="#868e96">%s</text>`+"\n", x+3, y0+12, esc(m.Label))
			}
		}
		for j, l := range p.Lines {
			c := l.Color
			if c == "" {
				c = lineColors[j%len(lineColors)]
			}
			var seg []string
			flush := func() {
				if len(seg) == 1 {
					seg = append(seg, seg[0])
				}
				if len(seg) > 0 {
					style := `stroke-width="2"`
					if l.Dashed {
						style = `stroke-width="1.5" stroke-dasharray="6,4"`
					}
					b.f(`<polyline fill="none" stroke="%s" %s stroke-linejoin="round" points="%s"/>`+"\n", c, style, strings.Join(seg, " "))
				}
				seg = seg[:0]
			}
			for k := range l.T {
				if k >= len(l.V) || math.IsNaN(l.V[k]) || math.IsInf(l.V[k], 0) {
					flush()
					continue
				}
				seg = append(seg, fmt.Sprintf("%.1f,%.1f", xOf(l.T[k]), yOf(math.Min(l.V[k], maxV))))
			}
			flush()
			ly := y0 + 10 + j*18
			dash := ""
			if l.Dashed {
				dash = ` stroke-dasharray="6,4"`
			}
			b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"%s/>`+"\n", w-right+14, ly, w-right+34, ly, c, dash)
			b.f(`<text x="%d" y="%d" font-size="12" fill="#212529">%s</text>`+"\n", w-right+40, ly+4, esc(l.Name))
		}
	}
	b.f(`<text x="%.1f" y="%d" font-size="12" fill="#495057" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, h-12, esc(xLabel))
	b.f("</svg>\n")
	return b.String()
}

package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A small hand-written SVG plotter: the report's figures need no outside
// plotting tool.

type series struct {
	name  string
	color string
	dash  bool
	pts   [][2]float64
}

type panel struct {
	title, xlabel, ylabel string
	xlog, ylog            bool
	xticks                []float64 // where to put x ticks (data values)
	xtickName             func(float64) string
	series                []series
}

var palette = map[string]string{
	"kit-fast":   "#1f77b4",
	"kit-strict": "#9467bd",
	"bare":       "#2ca02c",
	"sf":         "#d62728",
	"redis":      "#7f7f7f",
	"js":         "#ff7f0e",
}

var seriesNames = map[string]string{
	"kit-fast":   "UIMS web→web, MIAP fast",
	"kit-strict": "UIMS web→web, MIAP strict",
	"bare":       "bare NATS flow (ceiling)",
	"sf":         "store-and-forward via broker",
	"redis":      "Redis round trips (ops/s)",
	"js":         "JetStream inbox writes (writes/s)",
}

func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func fmtNum(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	case v >= 1 || v == 0:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func (p *panel) render(b *strings.Builder, x0, y0, w, h float64) {
	const ml, mr, mt, mb = 62, 12, 28, 42
	px0, px1 := x0+ml, x0+w-mr
	py0, py1 := y0+mt, y0+h-mb
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`+"\n", (px0+px1)/2, y0+17, esc(p.title))
	var xmin, xmax, ymin, ymax = math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range p.series {
		for _, pt := range s.pts {
			if (p.ylog && pt[1] <= 0) || pt[1] < 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, pt[0]), math.Max(xmax, pt[0])
			ymin, ymax = math.Min(ymin, pt[1]), math.Max(ymax, pt[1])
		}
	}
	for _, t := range p.xticks {
		xmin, xmax = math.Min(xmin, t), math.Max(xmax, t)
	}
	if math.IsInf(xmin, 0) {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle" fill="#888">not measured</text>`+"\n", (px0+px1)/2, (py0+py1)/2)
		return
	}
	if xmax == xmin {
		xmax = xmin * 2
	}
	fx := func(x float64) float64 {
		if p.xlog {
			return px0 + (math.Log(x)-math.Log(xmin))/(math.Log(xmax)-math.Log(xmin))*(px1-px0)
		}
		return px0 + (x-xmin)/(xmax-xmin)*(px1-px0)
	}
	var ylo, yhi float64
	var yticks []float64
	if p.ylog {
		ylo = math.Pow(10, math.Floor(math.Log10(ymin)))
		yhi = math.Pow(10, math.Ceil(math.Log10(ymax)))
		if yhi == ylo {
			yhi = ylo * 10
		}
		for v := ylo; v <= yhi*1.001; v *= 10 {
			yticks = append(yticks, v)
		}
	} else {
		ylo, yhi = 0, niceMax(ymax*1.05)
		for i := 0; i <= 5; i++ {
			yticks = append(yticks, yhi*float64(i)/5)
		}
	}
	fy := func(y float64) float64 {
		if p.ylog {
			return py1 - (math.Log(y)-math.Log(ylo))/(math.Log(yhi)-math.Log(ylo))*(py1-py0)
		}
		return py1 - (y-ylo)/(yhi-ylo)*(py1-py0)
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", px0, py0, px1-px0, py1-py0)
	for _, t := range yticks {
		y := fy(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3"/>`+"\n", px0, y, px1, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s</text>`+"\n", px0-4, y+3.5, fmtNum(t))
	}
	for _, t := range p.xticks {
		x := fx(t)
		name := fmtNum(t)
		if p.xtickName != nil {
			name = p.xtickName(t)
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e3e3e3"/>`+"\n", x, py0, x, py1)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>`+"\n", x, py1+13, esc(name))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`+"\n", (px0+px1)/2, py1+30, esc(p.xlabel))
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		x0+14, (py0+py1)/2, x0+14, (py0+py1)/2, esc(p.ylabel))
	for _, s := range p.series {
		var pts []string
		for _, pt := range s.pts {
			if pt[1] < 0 || (p.ylog && pt[1] <= 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(pt[0]), fy(pt[1])))
		}
		if len(pts) == 0 {
			continue
		}
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
		for _, pt := range pts {
			xy := strings.Split(pt, ",")
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], s.color)
		}
	}
}

// legend draws the series in a strip of width w, three to a line, and
// the notes under them.
func legend(b *strings.Builder, x0, y0, w float64, entries []series, notes []string) {
	col := w / 3
	y := y0 + 8
	for i, s := range entries {
		x := x0 + 20 + float64(i%3)*col
		if i > 0 && i%3 == 0 {
			y += 18
		}
		dash := ""
		if s.dash {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", x, y, x+30, y, s.color, dash)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n", x+36, y+4, esc(s.name))
	}
	y += 22
	for _, n := range notes {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" fill="#444">%s</text>`+"\n", x0+20, y, esc(n))
		y += 13
	}
}

// SVG draws the report: throughput and p99 against senders (100 B), and
// throughput, broker bytes and broker CPU per message against content
// size (64 senders, or the largest count measured).
func (rep *Report) SVG() []byte {
	rs := rep.Results
	key := func(r *Result) string { return flowName(r) }
	senders := map[int]bool{}
	sizes := map[int]bool{}
	for _, r := range rs {
		senders[r.Senders] = true
		if r.Size > 0 {
			sizes[r.Size] = true
		}
	}
	var sx, zx []float64
	for n := range senders {
		sx = append(sx, float64(n))
	}
	for z := range sizes {
		zx = append(zx, float64(z))
	}
	sortF(sx)
	sortF(zx)
	small := 100
	if !sizes[small] && len(zx) > 0 {
		small = int(zx[0])
	}
	at := 64
	if !senders[at] && len(sx) > 0 {
		at = int(sx[len(sx)-1])
	}
	order := []string{"kit-fast", "kit-strict", "bare", "sf", "js", "redis"}
	bySenders := func(size int, val func(*Result) float64, withRedis bool) []series {
		var out []series
		for _, k := range order {
			if k == "redis" && !withRedis {
				continue
			}
			s := series{name: seriesNames[k], color: palette[k], dash: k == "redis" || k == "js"}
			for _, r := range rs {
				if key(r) == k && r.Paced == 0 && (r.Size == size || (k == "redis" && r.Size == 0)) {
					s.pts = append(s.pts, [2]float64{float64(r.Senders), val(r)})
				}
			}
			if len(s.pts) > 0 {
				sortPts(s.pts)
				out = append(out, s)
			}
		}
		return out
	}
	var paced float64
	pacedN := 0
	for _, r := range rs {
		if r.Paced > 0 {
			paced, pacedN = r.Paced, r.Senders
		}
	}
	bySizeAt := func(pace float64, n int, val func(*Result) float64, keys ...string) []series {
		var out []series
		for _, k := range keys {
			s := series{name: seriesNames[k], color: palette[k]}
			for _, r := range rs {
				if key(r) == k && r.Senders == n && r.Size > 0 && r.Paced == pace {
					s.pts = append(s.pts, [2]float64{float64(r.Size), val(r)})
				}
			}
			if len(s.pts) > 0 {
				sortPts(s.pts)
				out = append(out, s)
			}
		}
		return out
	}
	bySize := func(val func(*Result) float64, keys ...string) []series { return bySizeAt(0, at, val, keys...) }
	cpuTitle := fmt.Sprintf("Broker CPU per message (net), %d senders", at)
	cpuSeries := bySize(func(r *Result) float64 { return r.brokerCPU() }, "kit-fast", "kit-strict", "bare", "sf")
	if paced > 0 {
		cpuTitle = fmt.Sprintf("Broker CPU per message (net), %g msg/s", paced)
		cpuSeries = bySizeAt(paced, pacedN, func(r *Result) float64 { return r.brokerCPU() }, "kit-fast", "bare", "sf")
	}
	sendersName := func(v float64) string { return strconv.Itoa(int(v)) }
	sizeName := func(v float64) string { return SizeName(int(v)) }
	panels := []panel{
		{title: fmt.Sprintf("Throughput, %s content", SizeName(small)), xlabel: "concurrent senders", ylabel: "messages/s (log)",
			xlog: true, ylog: true, xticks: sx, xtickName: sendersName, series: bySenders(small, func(r *Result) float64 { return r.Rate }, true)},
		{title: fmt.Sprintf("p99 latency, %s content", SizeName(small)), xlabel: "concurrent senders", ylabel: "p99 ms (log)",
			xlog: true, ylog: true, xticks: sx, xtickName: sendersName, series: bySenders(small, func(r *Result) float64 { return r.P99 }, false)},
		{title: fmt.Sprintf("Throughput vs content, %d senders", at), xlabel: "content size", ylabel: "messages/s (log)",
			xlog: true, ylog: true, xticks: zx, xtickName: sizeName,
			series: bySize(func(r *Result) float64 { return r.Rate }, "kit-fast", "kit-strict", "bare", "sf", "js")},
		{title: fmt.Sprintf("Broker bytes per message, %d senders", at), xlabel: "content size", ylabel: "bytes in+out (log)",
			xlog: true, ylog: true, xticks: zx, xtickName: sizeName,
			series: bySize(func(r *Result) float64 { return r.BrokerIn + r.BrokerOut }, "kit-fast", "kit-strict", "bare", "sf")},
		{title: cpuTitle, xlabel: "content size", ylabel: "µs (log)",
			xlog: true, ylog: true, xticks: zx, xtickName: sizeName, series: cpuSeries},
		{title: fmt.Sprintf("CPU per message, all processes, %d senders", at), xlabel: "content size", ylabel: "µs (log)",
			xlog: true, ylog: true, xticks: zx, xtickName: sizeName,
			series: bySize(func(r *Result) float64 { return r.TotalCPU() }, "kit-fast", "kit-strict", "bare", "sf", "js")},
	}
	const pw, ph, cols, lh = 400.0, 290.0, 3, 96.0
	rows := (len(panels) + cols - 1) / cols
	W, H := pw*cols, ph*float64(rows)+34+lh
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="DejaVu Sans, Arial, sans-serif">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	m := rep.Machine
	fmt.Fprintf(&b, `<text x="12" y="20" font-size="13">%s</text>`+"\n", esc(fmt.Sprintf("uims bench, %s: %d × %s, %s; broker %s; JetStream sync %s",
		rep.Started.Format("2006-01-02"), m.CPUs, m.Model, m.Go, rep.Config.Broker, rep.Config.Sync)))
	for i := range panels {
		panels[i].render(&b, float64(i%cols)*pw, 34+float64(i/cols)*ph, pw, ph)
	}
	var entries []series
	for _, k := range order {
		entries = append(entries, series{name: seriesNames[k], color: palette[k], dash: k == "redis" || k == "js"})
	}
	legend(&b, 0, 34+float64(rows)*ph, W, entries, []string{
		"Same run, same machine: all processes share its CPUs. Broker bytes: its NATS connection, headers included.",
		"Broker CPU: the broker process's user+system time, less its idle background. Bare flow: 3 request-replies, no work.",
		"Store-and-forward: the content passes through the broker. JetStream: one synchronous write per message.",
	})
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func sortF(v []float64) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}

func sortPts(p [][2]float64) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j][0] < p[j-1][0]; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

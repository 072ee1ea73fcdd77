// Package histo holds the latency histograms of the harness: HDR histograms
// in nanoseconds, serialized in the standard V2 compressed encoding so that
// the histograms of several loadgen processes and hosts merge exactly.
package histo

import (
	"fmt"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Geometry of every histogram: 1 ns to 100 s, 3 significant digits. All
// histograms share it, so merging never loses a count.
const (
	Lowest  = 1
	Highest = 100_000_000_000
	Digits  = 3
)

// New returns an empty histogram with the shared geometry.
func New() *hdr.Histogram { return hdr.New(Lowest, Highest, Digits) }

// Record adds v nanoseconds, clamped into the trackable range.
func Record(h *hdr.Histogram, v int64) {
	if v < Lowest {
		v = Lowest
	}
	if v > Highest {
		v = Highest
	}
	_ = h.RecordValue(v)
}

// Encoded is a histogram in the V2 compressed, base64 encoding ("" is an
// empty histogram).
type Encoded string

// Encode serializes h.
func Encode(h *hdr.Histogram) (Encoded, error) {
	if h == nil || h.TotalCount() == 0 {
		return "", nil
	}
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", err
	}
	return Encoded(b), nil
}

// Decode parses e; "" gives an empty histogram.
func Decode(e Encoded) (*hdr.Histogram, error) {
	if e == "" {
		return New(), nil
	}
	h, err := hdr.Decode([]byte(e))
	if err != nil {
		return nil, fmt.Errorf("decode histogram: %w", err)
	}
	return h, nil
}

// Merge decodes and adds up the histograms. It fails when a value would be
// dropped, which only happens with a foreign geometry.
func Merge(es ...Encoded) (*hdr.Histogram, error) {
	sum := New()
	for _, e := range es {
		h, err := Decode(e)
		if err != nil {
			return nil, err
		}
		if dropped := sum.Merge(h); dropped != 0 {
			return nil, fmt.Errorf("merge histogram: %d values out of range", dropped)
		}
	}
	return sum, nil
}

// MergeEncoded merges encoded histograms into one encoded histogram.
func MergeEncoded(es ...Encoded) (Encoded, error) {
	h, err := Merge(es...)
	if err != nil {
		return "", err
	}
	return Encode(h)
}

// Summary is the percentiles a report prints, in microseconds.
type Summary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
	Mean  float64 `json:"mean_us"`
}

// Summarize computes the summary of h.
func Summarize(h *hdr.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	us := func(v int64) float64 { return float64(v) / 1e3 }
	return Summary{
		Count: h.TotalCount(),
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
		Mean:  h.Mean() / 1e3,
	}
}

// CDFPoint is one point of a latency distribution: the fraction of samples
// at or below ValueUS microseconds.
type CDFPoint struct {
	ValueUS  float64
	Quantile float64
}

// CDF returns the cumulative distribution of h, thinned to at most about n
// points spread over the value axis.
func CDF(h *hdr.Histogram, n int) []CDFPoint {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	var pts []CDFPoint
	// Quantiles spaced for a log "nines" axis plus a linear body.
	qs := []float64{0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100}
	if n > len(qs) {
		for i := 0; i <= n-len(qs); i++ {
			qs = append(qs, 100*float64(i)/float64(n-len(qs)+1))
		}
	}
	sortFloats(qs)
	last := -1.0
	for _, q := range qs {
		v := float64(h.ValueAtQuantile(q)) / 1e3
		if q == 0 {
			v = float64(h.Min()) / 1e3
		}
		if q == last {
			continue
		}
		last = q
		pts = append(pts, CDFPoint{ValueUS: v, Quantile: q / 100})
	}
	return pts
}

func sortFloats(a []float64) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

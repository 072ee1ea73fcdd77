package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/heraldws/herald/benchmarks/internal/histo"
)

// ResultVersion is bumped when Result changes incompatibly.
const ResultVersion = 1

// Histogram names in Result.Hist.
const (
	HistLatency = "latency" // echo: round trip; ticker/churn: publish to receive
	HistConnect = "connect" // TCP connect + upgrade
	HistChurn   = "churn"   // one connect/upgrade/close cycle
)

// Result is what one loadgen process reports, and what merging the reports
// of several processes or hosts gives. Counters cover the measured window
// unless their name says otherwise; histograms are exact and mergeable.
type Result struct {
	Version  int    `json:"version"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	Shard    int    `json:"shard"`
	Shards   int    `json:"shards"`
	Parts    int    `json:"parts"` // results merged into this one

	Conns           int   `json:"conns"`            // connections asked of this shard
	Connected       int   `json:"connected"`        // upgraded connections held at the window start
	ConnectFailures int64 `json:"connect_failures"` // connections given up after retries
	ConnectNS       int64 `json:"connect_ns"`       // time to establish them all
	Dropped         int64 `json:"dropped"`          // held connections the server closed or lost
	ProtocolErrors  int64 `json:"protocol_errors"`  // invalid frames or payloads received
	// TLSHandshakes counts the TLS handshakes completed in the connect
	// phase, TLSResumed those of them that resumed an earlier session.
	TLSHandshakes int64 `json:"tls_handshakes,omitempty"`
	TLSResumed    int64 `json:"tls_resumed,omitempty"`

	WindowStartNS int64 `json:"window_start_ns"` // Unix ns
	WindowNS      int64 `json:"window_ns"`
	LateNS        int64 `json:"late_ns,omitempty"` // how late this shard was for a shared start

	Sent          int64 `json:"sent"`
	Received      int64 `json:"received"`
	BytesReceived int64 `json:"bytes_received"` // message payloads (inflated)
	// WireBytes is what the held connections read from their sockets in
	// the window: frames as the server sent them, headers, compression
	// and control frames included.
	WireBytes  int64 `json:"wire_bytes"`
	Compressed int64 `json:"compressed"` // messages that arrived compressed
	Gaps       int64 `json:"gaps"`       // ticker: missing sequence numbers, per (conn, symbol)
	Reordered  int64 `json:"reordered"`  // ticker: repeated or older sequence numbers

	ChurnConc     int   `json:"churn_conc,omitempty"`
	ChurnCycles   int64 `json:"churn_cycles,omitempty"`
	ChurnFailures int64 `json:"churn_failures,omitempty"`

	ClientCPUNS  int64 `json:"client_cpu_ns"` // loadgen user+sys during the window, all its processes
	ClientMaxRSS int64 `json:"client_max_rss_bytes"`

	// Kinds counts what each hostile kind's connections did (see
	// KindStats), over the whole run.
	Kinds map[string]*KindStats `json:"kinds,omitempty"`

	Hist map[string]histo.Encoded `json:"hist"`
	// Errors are the first errors in full (a few per process);
	// ErrorKinds counts every error of the run by kind (what failed and
	// how, without connection numbers), so that a run that loses
	// thousands of connections says why each of them went.
	Errors     []string         `json:"errors,omitempty"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
}

// TopErrorKinds returns up to n error kinds, the most frequent first, as
// "count× kind".
func (r *Result) TopErrorKinds(n int) []string {
	type kc struct {
		k string
		c int64
	}
	var all []kc
	for k, c := range r.ErrorKinds {
		all = append(all, kc{k, c})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].c != all[j].c {
			return all[i].c > all[j].c
		}
		return all[i].k < all[j].k
	})
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, fmt.Sprintf("%d× %s", all[i].c, all[i].k))
	}
	return out
}

// Seconds is the window length in seconds.
func (r *Result) Seconds() float64 { return float64(r.WindowNS) / 1e9 }

// MsgsPerSec is messages received per second of the window.
func (r *Result) MsgsPerSec() float64 {
	if r.WindowNS <= 0 {
		return 0
	}
	return float64(r.Received) / r.Seconds()
}

// ConnectRate is connections established per second of the connect phase.
func (r *Result) ConnectRate() float64 {
	if r.ConnectNS <= 0 {
		return 0
	}
	return float64(r.Connected) / (float64(r.ConnectNS) / 1e9)
}

// ChurnPerSec is completed connect/upgrade/close cycles per second.
func (r *Result) ChurnPerSec() float64 {
	if r.WindowNS <= 0 {
		return 0
	}
	return float64(r.ChurnCycles) / r.Seconds()
}

// Merge adds up the results of the shards (or processes) of one run:
// counters add, windows take the union, histograms merge exactly.
func Merge(rs ...*Result) (*Result, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("merge: no results")
	}
	out := &Result{Version: ResultVersion, Scenario: rs[0].Scenario, Target: rs[0].Target, Shards: rs[0].Shards, Hist: map[string]histo.Encoded{}}
	hists := map[string][]histo.Encoded{}
	var end int64
	for i, r := range rs {
		if r.Version != ResultVersion {
			return nil, fmt.Errorf("merge: result %d has version %d, want %d", i, r.Version, ResultVersion)
		}
		if r.Scenario != out.Scenario {
			return nil, fmt.Errorf("merge: scenarios differ: %q and %q", out.Scenario, r.Scenario)
		}
		parts := r.Parts
		if parts == 0 {
			parts = 1
		}
		out.Parts += parts
		out.Conns += r.Conns
		out.Connected += r.Connected
		out.ConnectFailures += r.ConnectFailures
		out.ConnectNS = max(out.ConnectNS, r.ConnectNS)
		out.Dropped += r.Dropped
		out.ProtocolErrors += r.ProtocolErrors
		out.TLSHandshakes += r.TLSHandshakes
		out.TLSResumed += r.TLSResumed
		if out.WindowStartNS == 0 || (r.WindowStartNS != 0 && r.WindowStartNS < out.WindowStartNS) {
			out.WindowStartNS = r.WindowStartNS
		}
		end = max(end, r.WindowStartNS+r.WindowNS)
		out.LateNS = max(out.LateNS, r.LateNS)
		out.Sent += r.Sent
		out.Received += r.Received
		out.BytesReceived += r.BytesReceived
		out.WireBytes += r.WireBytes
		out.Compressed += r.Compressed
		out.Gaps += r.Gaps
		out.Reordered += r.Reordered
		out.ChurnConc += r.ChurnConc
		out.ChurnCycles += r.ChurnCycles
		out.ChurnFailures += r.ChurnFailures
		out.ClientCPUNS += r.ClientCPUNS
		out.ClientMaxRSS += r.ClientMaxRSS
		for k, v := range r.Hist {
			hists[k] = append(hists[k], v)
		}
		for k, v := range r.Kinds {
			if out.Kinds == nil {
				out.Kinds = map[string]*KindStats{}
			}
			if out.Kinds[k] == nil {
				out.Kinds[k] = &KindStats{}
			}
			out.Kinds[k].Add(v)
		}
		for k, v := range r.ErrorKinds {
			if out.ErrorKinds == nil {
				out.ErrorKinds = map[string]int64{}
			}
			out.ErrorKinds[k] += v
		}
		for _, e := range r.Errors {
			if len(out.Errors) < 20 {
				out.Errors = append(out.Errors, e)
			}
		}
	}
	out.WindowNS = end - out.WindowStartNS
	keys := make([]string, 0, len(hists))
	for k := range hists {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e, err := histo.MergeEncoded(hists[k]...)
		if err != nil {
			return nil, fmt.Errorf("merge %s: %w", k, err)
		}
		out.Hist[k] = e
	}
	return out, nil
}

// ReadResults reads one or more JSON results (a stream of objects, or one
// array of them) from r.
func ReadResults(r io.Reader) ([]*Result, error) {
	dec := json.NewDecoder(r)
	var out []*Result
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("parse result: %w", err)
		}
		if len(raw) > 0 && raw[0] == '[' {
			var list []*Result
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, fmt.Errorf("parse result list: %w", err)
			}
			out = append(out, list...)
			continue
		}
		var res Result
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("parse result: %w", err)
		}
		out = append(out, &res)
	}
	for i, res := range out {
		if res.Version != ResultVersion {
			return nil, fmt.Errorf("result %d: version %d, want %d", i, res.Version, ResultVersion)
		}
	}
	return out, nil
}

package runner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/report"
)

// serverStats reads herald's counters of closed and refused connections
// from its ticker's /stats (over https in a TLS scenario, trusting the
// run's CA): the load generator sees a connection end, the server says
// why it ended it.
func (r *Runner) serverStats(ctx context.Context, addr string, sc Scenario) (*report.ServerStats, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	scheme := "http"
	if sc.TLS {
		scheme = "https"
		pem, err := os.ReadFile(r.TLS.CA)
		if err != nil {
			return nil, err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, ServerName: "localhost"}
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/stats: %s", resp.Status)
	}
	var st struct {
		Server *report.ServerStats `json:"server"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	if st.Server == nil {
		return nil, fmt.Errorf("/stats: no server counters")
	}
	return st.Server, nil
}

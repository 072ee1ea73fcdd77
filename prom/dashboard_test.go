package prom_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldws/herald/prom"
)

// The dashboard is valid JSON and asks only for series the Collector
// exports, so that renaming one cannot leave an empty panel behind.
func TestDashboardUsesExportedSeries(t *testing.T) {
	raw, err := os.ReadFile("grafana/herald.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/herald.json: %v", err)
	}
	srv, hub, _ := start(t)
	exported := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	prom.New(srv, hub).Describe(ch)
	close(ch)
	name := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		exported[name.FindStringSubmatch(d.String())[1]] = true
	}
	used := regexp.MustCompile(`herald_[a-z_]+`)
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, s := range used.FindAllString(tg.Expr, -1) {
				// A histogram's series are its name with these suffixes.
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(s, suffix); ok && exported[base] {
						s = base
					}
				}
				seen[s] = true
				if !exported[s] {
					t.Errorf("panel %q queries %s, which the Collector does not export", p.Title, s)
				}
			}
		}
	}
	for s := range exported {
		if !seen[s] {
			t.Errorf("no panel shows %s", s)
		}
	}
}

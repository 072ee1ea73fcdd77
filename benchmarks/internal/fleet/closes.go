package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldws/herald/benchmarks/internal/report"
)

// closeCounts are the reasons a herald server closes an upgraded
// connection on its own, from the ticker's /stats ("server").
type closeCounts = report.CloseCounts

// serverCloses sums every server's closes. The servers share one port, so
// each request over a new connection reaches one of them, picked by the
// kernel from the connection's addresses; /stats names the process that
// answered, and requests go on until each has answered once (about
// S·ln S requests) or the attempts run out. heard is how many answered.
func (r *run) serverCloses(ctx context.Context) (sum closeCounts, heard int, err error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	seen := map[int]bool{}
	for attempt := 0; attempt < 50*len(r.servers) && len(seen) < len(r.servers); attempt++ {
		var st struct {
			PID    int         `json:"pid"`
			Server closeCounts `json:"server"`
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/stats", nil)
		if err != nil {
			return sum, len(seen), err
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return sum, len(seen), ctx.Err()
			}
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || st.PID == 0 || seen[st.PID] {
			continue
		}
		seen[st.PID] = true
		sum.Add(st.Server)
	}
	return sum, len(seen), nil
}

// closesNote says why the servers closed connections, for an error
// message.
func (r *run) closesNote() string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, heard, err := r.serverCloses(ctx)
	if heard == 0 {
		return fmt.Sprintf("the servers' /stats did not answer (%v)", err)
	}
	return fmt.Sprintf("%d of %d servers say they closed: %s", heard, len(r.servers), c)
}

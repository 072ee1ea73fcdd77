package report

import (
	"encoding/json"
	"testing"
)

// The server's /stats decode into ServerStats, and Lost names the non-zero
// reasons only.
func TestServerStatsLost(t *testing.T) {
	var st struct {
		Server *ServerStats `json:"server"`
	}
	in := `{"server":{"Upgraded":10,"PongTimeouts":5804,"HandshakeTimeouts":873,"TLSErrors":0,"Closes":{"ByCode":[0,0,0,0,0,0,5804,0,0,0,0,0,0,0,0,0],"Application":0}}}`
	if err := json.Unmarshal([]byte(in), &st); err != nil {
		t.Fatal(err)
	}
	want := "873 handshake timeouts, 5804 pong timeouts, closes by code 1006: 5804"
	if got := st.Server.Lost(); got != want {
		t.Fatalf("Lost() = %q, want %q", got, want)
	}
	var none *ServerStats
	if none.Lost() != "" {
		t.Fatal("nil stats say something")
	}
}

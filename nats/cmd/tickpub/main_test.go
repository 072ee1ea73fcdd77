package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// hangGuard bounds every wait; it is no speed requirement.
const hangGuard = time.Minute

// tickpub's ticks reach a plain NATS subscriber of the topic's subject, in
// the wire format for a single message (the payload as is, text): one per
// tick, sequence 1 to N, and it says so once the broker has them all.
func TestPublishesTheTicks(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(hangGuard) {
		t.Fatal("the NATS server did not start")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("herald.S0", got); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	const ticks = 3
	o := options{url: ns.ClientURL(), interval: time.Millisecond, symbols: 1, size: 100, ticks: ticks}
	if err := run(ctx, o, &out, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "tickpub published 3 ticks") {
		t.Fatalf("output %q", out.String())
	}
	guard := time.After(hangGuard)
	for seq := int64(1); seq <= ticks; seq++ {
		select {
		case m := <-got:
			var tick struct {
				Sym string `json:"sym"`
				Seq int64  `json:"seq"`
				TS  int64  `json:"ts"`
			}
			if err := json.Unmarshal(m.Data, &tick); err != nil {
				t.Fatalf("%v: %s", err, m.Data)
			}
			if tick.Sym != "S0" || tick.Seq != seq || tick.TS <= 0 || len(m.Data) != 100 || m.Header.Get("Herald-Type") != "" {
				t.Fatalf("tick %d: %s (%d bytes, header %v)", seq, m.Data, len(m.Data), m.Header)
			}
		case <-guard:
			t.Fatalf("hang guard: tick %d never arrived", seq)
		}
	}
}

func TestRefusesBadFlags(t *testing.T) {
	for _, o := range []options{{symbols: 0, interval: time.Second}, {symbols: 1}, {symbols: 1, interval: time.Second, ticks: -1}} {
		if err := run(context.Background(), o, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

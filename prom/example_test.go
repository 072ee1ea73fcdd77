package prom_test

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/prom"
)

// A service exposes its herald server's and hub's counters on its own mux,
// beside its own metrics.
func Example() {
	srv, err := engine.New(engine.Config{Addr: "127.0.0.1:0"}, engine.BaseHandler{})
	if err != nil {
		log.Fatal(err)
	}
	hub, err := broadcast.New(srv, broadcast.Options{})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.New(srv, hub))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	_ = mux // http.ListenAndServe(":9090", mux), and srv.Start()
}

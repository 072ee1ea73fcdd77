// Package prom exposes a herald server's and hub's counters to Prometheus.
//
// It is a module of its own, so that a service that does not use Prometheus
// does not download its client. A Collector reads engine.Server.Stats and
// broadcast.Hub.Stats when Prometheus scrapes, so it costs nothing between
// scrapes and adds no work on the event loops. It has no label per
// connection or per topic: a server's series are a fixed, small set.
//
// Register it on the service's own registry and serve that on the service's
// own mux:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(prom.New(srv, hub))
//	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Several servers in one process are told apart with
// prometheus.WrapRegistererWith and a constant label. grafana/herald.json
// beside this package is a dashboard over these series.
//
// # Series
//
// Gauges: herald_connections (open or handshaking), herald_outbound_bytes
// (written, not yet taken by the peers' sockets), herald_hub_topics,
// herald_hub_subscriptions, herald_limit_table_entries by table (per_ip,
// handshake_rate).
//
// Counters: herald_accepted_total; herald_handshakes_total by outcome
// (upgraded, rejected, timeout); herald_http_served_total;
// herald_closes_total by reason (protocol_error, slow_consumer, budget,
// worker_backlog, pong_timeout, write_timeout, idle, read_rate);
// herald_handshake_limit_rejections_total by limit (conn_limit, path,
// per_ip, handshake_rate); herald_proxy_refused_total; herald_panics_total;
// herald_messages_received_total; herald_messages_sent_total (Conn.Send);
// herald_memory_returns_total; herald_hub_published_total;
// herald_hub_batches_total; herald_hub_deliveries_total;
// herald_hub_slow_total by action (dropped, conflated, closed).
package prom

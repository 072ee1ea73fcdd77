package prom

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
)

// Collector is a prometheus.Collector over a server's Stats and, if given,
// its hub's. Create it with New.
type Collector struct {
	srv *engine.Server
	hub *broadcast.Hub
}

// New returns a Collector for srv and hub. hub may be nil: a server without
// a hub then has no herald_hub_* series.
func New(srv *engine.Server, hub *broadcast.Hub) *Collector {
	return &Collector{srv: srv, hub: hub}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("herald", "", name), help, labels, nil)
}

var (
	connectionsDesc   = desc("connections", "Connections: upgraded and open, or handshaking.", "state")
	closeCodesDesc    = desc("connections_closed_total", "Upgraded connections ended, by the code of the close frame that ended them, whoever sent it (1006: none); codes 3000-4999 as \"application\".", "code")
	bytesInDesc       = desc("received_bytes_total", "Bytes read from clients, handshakes included.")
	bytesOutDesc      = desc("sent_bytes_total", "Bytes written to clients, hub deliveries included.")
	inboxDesc         = desc("loop_inbox_tasks", "Tasks queued to the event loops from other goroutines and not yet run.")
	latencyDesc       = desc("hub_publish_latency_seconds", "Publish to written to the subscribers' sockets, once per batch and event loop.")
	outboundDesc      = desc("outbound_bytes", "Bytes written to connections and not yet taken by the peers' sockets.")
	acceptedDesc      = desc("accepted_total", "TCP connections accepted.")
	handshakesDesc    = desc("handshakes_total", "WebSocket handshakes by outcome.", "outcome")
	hooksPendingDesc  = desc("handshake_hooks_pending", "Handshakes waiting for CheckOrigin or Authorize on the handshake workers (Config.HandshakeWorkers).")
	hookRefusedDesc   = desc("handshake_hook_refusals_total", "Handshakes answered 503 while their hooks were to run on the handshake workers: timeout (HandshakeTimeout passed) or queue_full; also counted as rejected.", "reason")
	httpServedDesc    = desc("http_served_total", "Plain HTTP requests served by Config.HTTPHandler.")
	closesDesc        = desc("closes_total", "Connections the server ended, by reason.", "reason")
	panicsDesc        = desc("panics_total", "Panics recovered from handlers and hooks.")
	receivedDesc      = desc("messages_received_total", "Data messages received.")
	sentDesc          = desc("messages_sent_total", "Data messages sent with Conn.Send (hub deliveries are herald_hub_deliveries_total).")
	memReturnsDesc    = desc("memory_returns_total", "Times freed memory was given back to the OS (Config.ReturnMemoryAfter).")
	topicsDesc        = desc("hub_topics", "Topics with at least one subscriber.")
	subscriptionsDesc = desc("hub_subscriptions", "Subscriptions: (connection, topic) pairs.")
	publishedDesc     = desc("hub_published_total", "Messages published, locally or through the Bus.")
	batchesDesc       = desc("hub_batches_total", "Batch deliveries run by the event loops.")
	deliveriesDesc    = desc("hub_deliveries_total", "Messages written to subscribers.")
	slowDesc          = desc("hub_slow_total", "Messages to slow subscribers, by what their topic's policy did.", "action")
	limitRejectsDesc  = desc("handshake_limit_rejections_total", "Handshakes refused by an operational limit (also in herald_handshakes_total{outcome=\"rejected\"}): conn_limit (503, MaxConns), path (404, Path), per_ip (429, MaxConnsPerIP), handshake_rate (429, HandshakeRate).", "limit")
	proxyRefusedDesc  = desc("proxy_refused_total", "Connections closed for a missing, untrusted or malformed PROXY protocol header.")
	limitTablesDesc   = desc("limit_table_entries", "Entries in the per-address tables: per_ip (addresses with live connections), handshake_rate (token buckets in use, at most the table's capacity).", "table")
	historyTopicsDesc = desc("hub_history_topics", "Topics with a history (Hub.SetHistory).")
	historyMsgsDesc   = desc("hub_history_messages", "Messages held in topics' histories.")
	historyBytesDesc  = desc("hub_history_bytes", "Bytes retained by the histories' buffers.")
)

// Describe sends the descriptors of every series the Collector can export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connectionsDesc, outboundDesc, acceptedDesc, handshakesDesc,
		httpServedDesc, closesDesc, panicsDesc, receivedDesc, sentDesc, memReturnsDesc,
		closeCodesDesc, bytesInDesc, bytesOutDesc, inboxDesc, hooksPendingDesc, hookRefusedDesc,
		limitRejectsDesc, proxyRefusedDesc, limitTablesDesc} {
		ch <- d
	}
	if c.hub != nil {
		for _, d := range []*prometheus.Desc{topicsDesc, subscriptionsDesc, publishedDesc, batchesDesc, deliveriesDesc, slowDesc, latencyDesc,
			historyTopicsDesc, historyMsgsDesc, historyBytesDesc} {
			ch <- d
		}
	}
}

// Collect reads the counters once and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(connectionsDesc, float64(st.Open), "open")
	gauge(connectionsDesc, float64(st.Active-st.Open), "handshaking")
	for i, n := range st.Closes.ByCode {
		counter(closeCodesDesc, n, strconv.Itoa(1000+i))
	}
	counter(closeCodesDesc, st.Closes.Application, "application")
	counter(bytesInDesc, st.BytesIn)
	counter(bytesOutDesc, st.BytesOut)
	gauge(inboxDesc, float64(st.InboxDepth))
	gauge(outboundDesc, float64(st.OutboundBytes))
	counter(acceptedDesc, st.Accepted)
	counter(handshakesDesc, st.Upgraded, "upgraded")
	counter(handshakesDesc, st.Rejected, "rejected")
	counter(handshakesDesc, st.HandshakeTimeouts, "timeout")
	gauge(hooksPendingDesc, float64(st.HandshakesPending))
	counter(hookRefusedDesc, st.HookTimeouts, "timeout")
	counter(hookRefusedDesc, st.HookQueueFull, "queue_full")
	counter(httpServedDesc, st.HTTPServed)
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"protocol_error", st.ProtocolErrors},
		{"slow_consumer", st.SlowClosed},
		{"budget", st.BudgetShed},
		{"worker_backlog", st.WorkerBacklogClosed},
		{"pong_timeout", st.PongTimeouts},
		{"write_timeout", st.WriteTimeouts},
		{"idle", st.IdleClosed},
		{"read_rate", st.ReadRateClosed},
	} {
		counter(closesDesc, r.n, r.reason)
	}
	counter(limitRejectsDesc, st.ConnLimitRejected, "conn_limit")
	counter(limitRejectsDesc, st.PathRejected, "path")
	counter(limitRejectsDesc, st.PerIPRejected, "per_ip")
	counter(limitRejectsDesc, st.HandshakeRateRejected, "handshake_rate")
	counter(proxyRefusedDesc, st.ProxyRefused)
	gauge(limitTablesDesc, float64(st.PerIPTable), "per_ip")
	gauge(limitTablesDesc, float64(st.HandshakeRateTable), "handshake_rate")
	counter(panicsDesc, st.Panics)
	counter(receivedDesc, st.MessagesIn)
	counter(sentDesc, st.MessagesOut)
	counter(memReturnsDesc, st.MemoryReturns)
	if c.hub == nil {
		return
	}
	hs := c.hub.Stats()
	gauge(topicsDesc, float64(hs.Topics))
	gauge(subscriptionsDesc, float64(hs.Subscriptions))
	counter(publishedDesc, hs.Published)
	counter(batchesDesc, hs.Batches)
	counter(deliveriesDesc, hs.Deliveries)
	counter(slowDesc, hs.Dropped, "dropped")
	counter(slowDesc, hs.Conflated, "conflated")
	counter(slowDesc, hs.SlowClosed, "closed")
	ch <- latencyHistogram(hs.PublishLatency)
	gauge(historyTopicsDesc, float64(hs.HistoryTopics))
	gauge(historyMsgsDesc, float64(hs.HistoryMessages))
	gauge(historyBytesDesc, float64(hs.HistoryBytes))
}

// latencyHistogram turns the hub's histogram (a count per bucket) into
// Prometheus's (cumulative counts by upper bound, in seconds).
func latencyHistogram(l broadcast.Latency) prometheus.Metric {
	buckets := make(map[float64]uint64, len(broadcast.LatencyBuckets))
	var cum uint64
	for i, bound := range broadcast.LatencyBuckets {
		cum += l.Counts[i]
		buckets[bound.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(latencyDesc, l.Count(), l.Sum.Seconds(), buckets)
}

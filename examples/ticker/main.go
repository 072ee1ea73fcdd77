// Command ticker is herald's main example: a market-data ticker pushing
// price updates to every connected client, with a live browser page.
//
//	go run ./examples/ticker
//
// then open the printed address. The WebSocket is at /ws: a connection
// subscribes to every symbol unless ?symbols=S0,S3 narrows it. Each tick
// publishes one JSON text message per symbol with "sym", "seq" (+1 per tick)
// and "ts" (Unix ns at publish), padded to about -size bytes (-payload book
// fills it with an order book instead, which compresses like real market
// data when -compression is on).
//
// The page speaks herald's subscribe protocol on the same /ws (a client
// that offers the subprotocol herald.json.v1 subscribes itself to
// ticks.S0, ticks.S1...), through herald's JavaScript client, served at
// /herald-client.js: it reconnects by itself and recovers the ticks it
// missed from the last -history ticks per symbol the ticker keeps in
// memory, or says it could not (after a restart) and resynchronises.
//
// Memory is bounded by its flags: a client that falls more than -high-water
// behind gets only the latest price per symbol until it catches up, all
// clients together hold at most -max-outbound-total, the kernel holds at
// most about twice -send-buffer per client, a client that reads nothing for
// 10 s is closed, and -memory-limit is the process's budget:
// the Go runtime's soft memory limit (what GOMEMLIMIT sets), which keeps
// the garbage collector's headroom inside it. Backlogs cost about 2.5 times
// their bytes in RSS under the default garbage collector settings (buffers
// rounded up to powers of two, the collector's headroom), so the limit is
// at least four times -max-outbound-total.
//
// This build runs alone. The same ticker with -nats URL, which joins a
// cluster through a NATS broker (and -publish=false, a node that only
// delivers what others publish), is nats/cmd/ticker in the nats module:
// the core module carries no broker client. Both share package app.
package main

import "github.com/heraldws/herald/examples/ticker/app"

func main() { app.Main(nil) }

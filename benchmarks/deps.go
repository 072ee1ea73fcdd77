//go:build tools

// Package benchmarks pins the peer libraries and tools the harness builds.
package benchmarks

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/gorilla/websocket"
	_ "github.com/lesismal/nbio/nbhttp/websocket"
	_ "github.com/lxzan/gws"
	_ "github.com/panjf2000/gnet/v2"
)

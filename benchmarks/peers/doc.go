// Package peers holds the servers herald is measured against: gorilla, nbio
// and gws (Go, one command each) and uWebSockets.js and ws (Node, in node/).
// Every peer speaks the bench contract of herald's examples:
//
//	<peer> echo   -addr HOST:PORT
//	<peer> ticker -addr HOST:PORT -interval D -symbols K -size B
//
// and prints "<impl> <mode> listening on HOST:PORT" once listening. See
// README.md for how each is written; peers_test.go checks them all.
package peers

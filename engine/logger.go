package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
)

// gnetLogger routes gnet's logging into the server's slog.Logger, so that
// gnet never prints on its own.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) log(level slog.Level, format string, args []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, "gnet: "+fmt.Sprintf(format, args...))
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gnetLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args) }
func (g gnetLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }

// Fatalf is logged as an error: a library must not exit the process.
func (g gnetLogger) Fatalf(format string, args ...any) { g.log(slog.LevelError, format, args) }

// addrString is how logs show a network address: as text, which reads the
// same in text and JSON handlers (a *net.TCPAddr would be logged by a JSON
// handler as an object of its fields).
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

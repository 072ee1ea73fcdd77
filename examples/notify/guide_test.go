package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// guideScaffold declares what the snippets of docs/EMBEDDING.md take from
// the example around them, with the example's own signatures.
const guideScaffold = `package guide

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/prom"
	"github.com/heraldws/herald/upgrade"
)

var (
	_ = json.Marshal
	_ = errors.Is
	_ = slices.Backward[[]string]
	_ = strings.Split
	_ = netip.ParseAddr
	_ = prometheus.NewRegistry
	_ = collectors.NewGoCollector
	_ = promhttp.HandlerFor
	_ = prom.New
	_ = signal.NotifyContext
	_ = os.Interrupt
	_ = syscall.SIGTERM
)

type userStore struct{}

func (*userStore) Lookup(ctx context.Context, token string) (string, error) { return "", nil }

var errNoSession = errors.New("no such session")

type service struct {
	hub   *broadcast.Hub
	users *userStore
}

func (s *service) notify(w http.ResponseWriter, r *http.Request) {}

type event struct{ Type, User, Text string }

type socket struct {
	engine.BaseHandler
	s *service
}

type handler struct {
	engine.BaseHandler
	jobs   chan func()
	lookup func(string) string
}

func readText(w http.ResponseWriter, r *http.Request) (string, bool) { return "", false }
func writeError(w http.ResponseWriter, status int, reason string)  {}
func writeJSON(w http.ResponseWriter, status int, v any)           {}

var (
	_ = (*service).announce
	_ = (*service).authorize
	_ = socket.OnOpen
	_ = handler.OnMessage
	_ = clientIP
)
`

// TestGuideSnippetsCompile builds every Go snippet of docs/EMBEDDING.md
// against the code as it is: functions as they are, statements inside a
// function that declares what they use.
func TestGuideSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a package with the go command")
	}
	guide, err := os.ReadFile(filepath.Join("..", "..", "docs", "EMBEDDING.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(guide), -1)
	if len(blocks) < 8 {
		t.Fatalf("found %d Go snippets in the guide, want at least 8", len(blocks))
	}
	// Statement snippets, by their first line: the function that holds
	// them declares what they use and uses what they declare.
	wrappers := []struct{ first, head, tail string }{
		{"srv, err := engine.New(", "func mount(s *service, ln net.Listener) error {", "_ = hub\nreturn nil\n}"},
		{"cfg := engine.Config{", "func origins() {", "_ = cfg\n}"},
		{"// 1. The HTTP server", "func shutdown(hs *http.Server, srv *engine.Server) {", "}"},
		{"ctx, stop := signal.NotifyContext(", "func signals() {", "_ = ctx\n}"},
		{"reg := prometheus.NewRegistry()", "func metrics(srv *engine.Server, hub *broadcast.Hub, mux *http.ServeMux) {", "}"},
	}
	var src strings.Builder
	src.WriteString(guideScaffold)
	for _, b := range blocks {
		code := b[1]
		wrapped := false
		for _, w := range wrappers {
			if strings.HasPrefix(code, w.first) {
				src.WriteString("\n" + w.head + "\n" + code + w.tail + "\n")
				wrapped = true
			}
		}
		if !wrapped {
			if !strings.HasPrefix(code, "func ") {
				t.Fatalf("a snippet that is neither a function nor wrapped here:\n%s", code)
			}
			src.WriteString("\n" + code)
		}
	}

	dir := t.TempDir()
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	gomod := strings.Replace(string(mod), "module github.com/heraldws/herald/examples/notify", "module guide", 1)
	gomod = strings.ReplaceAll(gomod, "=> ../../prom", "=> "+filepath.Join(root, "prom"))
	gomod = strings.ReplaceAll(gomod, "=> ../..", "=> "+root)
	for name, data := range map[string]string{"go.mod": gomod, "go.sum": string(sum), "guide.go": src.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "vet", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the guide's snippets do not build: %v\n%s\n--- the package:\n%s", err, out, src.String())
	}
}

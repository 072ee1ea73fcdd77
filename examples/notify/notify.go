package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldws/herald/broadcast"
	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/prom"
	"github.com/heraldws/herald/upgrade"
)

//go:embed web
var webFiles embed.FS

// Limits and names of the service (see the package documentation).
const (
	cookieName     = "notify_session"
	announceTopic  = "announce"
	userPrefix     = "user:"
	maxUserLen     = 32
	maxBodyBytes   = 4 << 10
	maxTextBytes   = 1000
	authTimeout    = 5 * time.Second
	sessionTTL     = 24 * time.Hour
	defaultLatency = 50 * time.Millisecond
)

// options are the service's settings; the command line sets them.
type options struct {
	addr        string
	latency     time.Duration // the user store's simulated round trip
	maxSessions int
	loops       int
}

func defaultOptions() options {
	return options{addr: "127.0.0.1:8082", latency: defaultLatency, maxSessions: 10000}
}

// service is the notification service: one http.ServeMux with herald
// mounted at /ws beside the service's own endpoints.
type service struct {
	srv   *engine.Server
	hub   *broadcast.Hub
	users *userStore
	mux   *http.ServeMux
	log   *slog.Logger
	reg   *prometheus.Registry
	seq   atomic.Uint64 // notification ids

	// open holds each session's open connections, so that logging out
	// closes them (the other tabs of that browser too).
	mu   sync.Mutex
	open map[string]map[*engine.Conn]struct{}

	notified *prometheus.CounterVec
}

// viewer is a connection's session: who it is, and by which login.
type viewer struct {
	user, token string
}

// closeLoggedOut is the close code of a connection whose session logged
// out (a private code, 4000-4999): the page shows its login form.
const closeLoggedOut engine.StatusCode = 4001

// socket is the WebSocket side: every connection subscribes to its user's
// topic and to the announcements, and sends nothing the server reads.
type socket struct {
	engine.BaseHandler
	s *service
}

// OnOpen runs on the connection's event loop once Authorize has accepted
// it: the session is the viewer Authorize returned. Subscriptions made
// here are in effect before the client can read the 101, so nothing
// published after the client sees the socket open is lost.
func (h socket) OnOpen(c *engine.Conn) {
	v, _ := c.Session().(viewer)
	if err := h.s.hub.Subscribe(c, userPrefix+v.user, announceTopic); err != nil {
		_ = c.Close(engine.StatusInternalError, "subscribe failed")
		return
	}
	h.s.track(c, v.token, true)
	b, _ := json.Marshal(event{Type: "hello", User: v.user, TS: time.Now().UnixMilli()})
	_ = c.Send(engine.TextMessage, b)
}

// OnClose forgets the connection (the hub drops its subscriptions itself).
func (h socket) OnClose(c *engine.Conn, _ error) {
	v, _ := c.Session().(viewer)
	h.s.track(c, v.token, false)
}

// track adds c to its session's open connections, or removes it.
func (s *service) track(c *engine.Conn, token string, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := s.open[token]
	if open {
		if conns == nil {
			conns = make(map[*engine.Conn]struct{})
			s.open[token] = conns
		}
		conns[c] = struct{}{}
		return
	}
	delete(conns, c)
	if len(conns) == 0 {
		delete(s.open, token)
	}
}

// closeSession closes the open connections of a session that ended.
func (s *service) closeSession(token string) {
	s.mu.Lock()
	conns := make([]*engine.Conn, 0, len(s.open[token]))
	for c := range s.open[token] {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close(closeLoggedOut, "logged out")
	}
}

// OnMessage closes the connection: clients only listen.
func (h socket) OnMessage(c *engine.Conn, _ engine.MessageType, _ []byte) {
	_ = c.Close(engine.StatusPolicyViolation, "this socket only sends")
}

// event is what the page receives, one JSON text message each.
type event struct {
	Type string `json:"type"` // "hello", "notify" or "announce"
	ID   uint64 `json:"id,omitempty"`
	User string `json:"user,omitempty"` // hello: who is logged in; notify: the addressee
	Text string `json:"text,omitempty"`
	TS   int64  `json:"ts"` // Unix milliseconds
}

func newService(opts options, logger *slog.Logger) (*service, error) {
	s := &service{
		users: newUserStore(opts.latency, sessionTTL, opts.maxSessions),
		mux:   http.NewServeMux(),
		log:   logger,
		open:  make(map[string]map[*engine.Conn]struct{}),
		reg:   prometheus.NewRegistry(),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "notify_published_total",
			Help: "Notifications accepted for delivery, by kind (user, announce).",
		}, []string{"kind"}),
	}
	// No Addr: herald listens on nothing of its own. net/http accepts
	// every connection and hands the upgraded ones to herald's loops.
	srv, err := engine.New(engine.Config{
		Loops:     opts.loops,
		Logger:    logger,
		Authorize: s.authorize,
		// Clients only listen: a small message bound.
		MaxMessageBytes: 4 << 10,
	}, socket{s: s})
	if err != nil {
		return nil, err
	}
	hub, err := broadcast.New(srv, broadcast.Options{})
	if err != nil {
		return nil, err
	}
	s.srv, s.hub = srv, hub
	s.reg.MustRegister(prom.New(srv, hub), s.notified,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.routes()
	return s, nil
}

func (s *service) routes() {
	// The page's three files by name, not "GET /": a catch-all GET would
	// answer GET /notify with 404 instead of 405.
	web, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(web)
	s.mux.Handle("GET /{$}", files)
	s.mux.Handle("GET /app.js", files)
	s.mux.Handle("GET /style.css", files)
	s.mux.Handle("GET /ws", s.srv)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.HandleFunc("GET /me", s.me)
	s.mux.HandleFunc("POST /notify", s.notify)
	s.mux.HandleFunc("POST /announce", s.announce)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
}

// authorize runs at every upgrade: the session cookie, looked up in the
// user store, names the user, who becomes the connection's session (with
// the token, so that logging out can close the connection).
func (s *service) authorize(r *upgrade.Request) (any, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, upgrade.Reject(http.StatusUnauthorized, "log in first")
	}
	// Mounted, this runs on the request's net/http goroutine: the lookup
	// may block, under the request's context (it ends if the client goes)
	// and bounded by authTimeout.
	ctx, cancel := context.WithTimeout(r.Context(), authTimeout)
	defer cancel()
	user, err := s.users.Lookup(ctx, c.Value)
	switch {
	case errors.Is(err, errNoSession):
		return nil, upgrade.Reject(http.StatusUnauthorized, "session expired: log in again")
	case err != nil:
		return nil, upgrade.Reject(http.StatusServiceUnavailable, "user store unavailable")
	}
	return viewer{user: user, token: c.Value}, nil
}

// validUser reports whether name is 1 to 32 characters a-z, 0-9, '-' or
// '_': a user name the service accepts, and so a valid topic.
func validUser(name string) bool {
	if len(name) == 0 || len(name) > maxUserLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// login starts a session: the form field "user" names the user (no
// password: this example stands for a real login). The token goes into an
// HttpOnly cookie that the browser sends with the WebSocket upgrade.
func (s *service) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		bodyError(w, err)
		return
	}
	user := r.PostForm.Get("user")
	if !validUser(user) {
		writeError(w, http.StatusBadRequest, "user must be 1 to 32 characters a-z, 0-9, '-' or '_'")
		return
	}
	token, err := s.users.Login(r.Context(), user)
	switch {
	case errors.Is(err, errTooManyUsers):
		writeError(w, http.StatusServiceUnavailable, "too many sessions: try again later")
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "user store unavailable")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/",
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil,
	})
	writeJSON(w, http.StatusOK, map[string]string{"user": user})
}

// logout ends the session, closes its open connections (4001) and clears
// the cookie.
func (s *service) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		if err := s.users.Logout(r.Context(), c.Value); err != nil {
			writeError(w, http.StatusServiceUnavailable, "user store unavailable")
			return
		}
		s.closeSession(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	writeJSON(w, http.StatusOK, map[string]string{})
}

// me says who the cookie belongs to: the page asks on load and after a
// socket that never opened, to tell "log in again" from "server away".
func (s *service) me(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	user, err := s.users.Lookup(r.Context(), c.Value)
	switch {
	case errors.Is(err, errNoSession):
		writeError(w, http.StatusUnauthorized, "session expired")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "user store unavailable")
	default:
		writeJSON(w, http.StatusOK, map[string]string{"user": user})
	}
}

// notify delivers a notification to one user's connections, however many
// (none is not an error: the user may be offline).
func (s *service) notify(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if !validUser(user) {
		writeError(w, http.StatusBadRequest, "query parameter user must be 1 to 32 characters a-z, 0-9, '-' or '_'")
		return
	}
	text, ok := readText(w, r)
	if !ok {
		return
	}
	s.publish(w, userPrefix+user, event{Type: "notify", User: user, Text: text}, "user")
}

// announce delivers a notification to every connected user.
func (s *service) announce(w http.ResponseWriter, r *http.Request) {
	text, ok := readText(w, r)
	if !ok {
		return
	}
	s.publish(w, announceTopic, event{Type: "announce", Text: text}, "announce")
}

// publish encodes ev once and hands it to the hub, which writes it to the
// topic's subscribers on their event loops; 202 says it was accepted,
// with how many connections were subscribed at that moment.
func (s *service) publish(w http.ResponseWriter, topic string, ev event, kind string) {
	ev.ID = s.seq.Add(1)
	ev.TS = time.Now().UnixMilli()
	b, err := json.Marshal(ev)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding failed")
		return
	}
	if err := s.hub.Publish(topic, engine.TextMessage, b); err != nil {
		if errors.Is(err, engine.ErrClosed) {
			writeError(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		s.log.Error("publish", "topic", topic, "err", err)
		writeError(w, http.StatusInternalServerError, "publish failed")
		return
	}
	s.notified.WithLabelValues(kind).Inc()
	writeJSON(w, http.StatusAccepted, map[string]any{
		"id": ev.ID, "delivered_to": topic, "connections": s.hub.Subscribers(topic),
	})
}

// notification is the body of /notify and /announce.
type notification struct {
	Text string `json:"text"`
}

// readText decodes a request's {"text":"..."} body: JSON only, at most
// maxBodyBytes, exactly one object with no unknown field, and a text of 1
// to maxTextBytes bytes. Anything else is answered here (400, 413 or 415,
// with the reason) and ok is false.
func readText(w http.ResponseWriter, r *http.Request) (text string, ok bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "the body must be application/json")
			return "", false
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var n notification
	if err := dec.Decode(&n); err != nil {
		bodyError(w, err)
		return "", false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "more than one JSON value in the body")
		return "", false
	}
	switch {
	case n.Text == "":
		writeError(w, http.StatusBadRequest, `"text" is missing or empty`)
	case len(n.Text) > maxTextBytes:
		writeError(w, http.StatusBadRequest, fmt.Sprintf(`"text" is %d bytes, the limit is %d`, len(n.Text), maxTextBytes))
	default:
		return n.Text, true
	}
	return "", false
}

// bodyError answers a body that could not be read or decoded: 413 past
// the size limit, else 400 with the decoder's reason.
func bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "the body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		writeError(w, http.StatusBadRequest, "the body ends inside its JSON value")
	default:
		writeError(w, http.StatusBadRequest, "bad body: "+strings.TrimPrefix(err.Error(), "json: "))
	}
}

func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, map[string]string{"error": reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

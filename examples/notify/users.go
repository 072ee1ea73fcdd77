package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Errors of the user store.
var (
	errNoSession    = errors.New("no such session")
	errTooManyUsers = errors.New("too many sessions")
)

// userStore stands for the service's user database: it maps session
// tokens to user names. Every call waits latency first, as a call to a
// real database or identity service would, and gives up when its context
// ends. That wait is why Authorize must not run on an event loop: mounted
// on net/http, it runs on the request's own goroutine.
type userStore struct {
	latency time.Duration
	ttl     time.Duration
	max     int
	now     func() time.Time
	// hold, if set (by tests), replaces the latency: the round trip
	// lasts as long as it blocks.
	hold func(ctx context.Context) error

	mu       sync.Mutex
	sessions map[string]session
}

// session is one logged-in browser.
type session struct {
	user    string
	expires time.Time
}

func newUserStore(latency, ttl time.Duration, max int) *userStore {
	return &userStore{latency: latency, ttl: ttl, max: max, now: time.Now, sessions: make(map[string]session)}
}

// wait is the store's round trip: latency, or less if ctx ends first.
func (s *userStore) wait(ctx context.Context) error {
	if s.hold != nil {
		return s.hold(ctx)
	}
	if s.latency <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(s.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Login starts a session for user and returns its token: 32 random bytes,
// base64url. The store holds at most max sessions; expired ones make room
// first.
func (s *userStore) Login(ctx context.Context, user string) (string, error) {
	if err := s.wait(ctx); err != nil {
		return "", err
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	token := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.sessions) >= s.max {
		for k, v := range s.sessions {
			if !now.Before(v.expires) {
				delete(s.sessions, k)
			}
		}
		if len(s.sessions) >= s.max {
			return "", errTooManyUsers
		}
	}
	s.sessions[token] = session{user: user, expires: now.Add(s.ttl)}
	return token, nil
}

// Lookup returns the user of a live session, or errNoSession.
func (s *userStore) Lookup(ctx context.Context, token string) (string, error) {
	if err := s.wait(ctx); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.sessions[token]
	if !ok {
		return "", errNoSession
	}
	if !s.now().Before(v.expires) {
		delete(s.sessions, token)
		return "", errNoSession
	}
	return v.user, nil
}

// Logout ends a session; an unknown token is not an error.
func (s *userStore) Logout(ctx context.Context, token string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.sessions, token)
	s.mu.Unlock()
	return nil
}

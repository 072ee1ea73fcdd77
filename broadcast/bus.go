package broadcast

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Bus carries publishes between hubs in different processes or on different
// nodes, through a broker such as NATS. The hub hands the Bus every local
// publish; the Bus hands the hub, through Hub.Deliver, the messages that
// other hubs published. A Bus must not echo a hub's own publishes back to
// it: the hub has already delivered them locally.
type Bus interface {
	// Attach is called once, by New, with the hub the Bus delivers to.
	Attach(h *Hub)
	// Publish forwards a batch published on the attached hub. It must not
	// keep msgs or their Data after it returns, and must not block for
	// long: the publisher waits for it. The hub delivers the batch locally
	// whatever Publish returns.
	Publish(msgs []Message) error
}

// InterestBus is a Bus that wants to know which topics have local
// subscribers, so that it receives from other nodes only what this one can
// deliver (a broker subscription per topic instead of everything).
//
// The hub calls Interest(topic, true) when a topic gains its first local
// subscriber and Interest(topic, false) when it loses its last one,
// strictly alternating per topic, in the order the changes happen. It
// calls it on an event loop with the hub's topic lock held, so Interest
// must not block and must not call back into the hub: record the change
// and act on it from another goroutine.
type InterestBus interface {
	Bus
	Interest(topic string, on bool)
}

// BusError is what Publish and PublishBatch return when the batch was
// delivered to local subscribers but the Bus refused it: other processes
// or nodes did not get it. Err is the Bus's reason.
type BusError struct {
	Err error
}

func (e *BusError) Error() string {
	return "broadcast: delivered locally, but the bus did not take the batch: " + e.Err.Error()
}

func (e *BusError) Unwrap() error { return e.Err }

// LocalBus connects hubs in one process, for example several servers
// sharing a port with SO_REUSEPORT: a publish on any of them reaches the
// subscribers of all. Give each hub its own Port. It is also the reference
// for what a broker-backed Bus must do.
type LocalBus struct {
	mu    sync.RWMutex
	ports []*localPort
}

// Port returns a new endpoint of the bus, for one hub's Options.Bus.
func (b *LocalBus) Port() Bus {
	p := &localPort{bus: b}
	b.mu.Lock()
	b.ports = append(b.ports, p)
	b.mu.Unlock()
	return p
}

type localPort struct {
	bus *LocalBus
	hub atomic.Pointer[Hub]
}

var errNotAttached = errors.New("broadcast: bus port is not attached to a hub")

func (p *localPort) Attach(h *Hub) { p.hub.Store(h) }

// Publish delivers msgs to the hubs of every other port.
func (p *localPort) Publish(msgs []Message) error {
	if p.hub.Load() == nil {
		return errNotAttached
	}
	p.bus.mu.RLock()
	defer p.bus.mu.RUnlock()
	for _, other := range p.bus.ports {
		if other == p {
			continue
		}
		if h := other.hub.Load(); h != nil {
			// Only a hub whose server has shut down refuses: skip it.
			_ = h.Deliver(msgs)
		}
	}
	return nil
}

package ports

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// ErrExhausted is returned when not enough ports are free.
var ErrExhausted = errors.New("port pool exhausted")

// Pool is a host port pool. Safe for concurrent use.
type Pool struct {
	mu       sync.Mutex
	first    int
	last     int
	queue    []int // free ports in FIFO order
	free     map[int]time.Time
	used     map[int]bool
	cooldown time.Duration
	now      func() time.Time
	probe    func(port int) bool
}

// Options tune a pool.
type Options struct {
	Cooldown time.Duration
	// ProbeHost, if set, makes Take skip ports some other process already
	// listens on (checked by binding host:port for a moment).
	ProbeHost string
	// Probe replaces the bind probe (tests: no real port is touched); it
	// reports whether a port is free for the taking.
	Probe func(port int) bool
	Now   func() time.Time
}

// New builds a pool over [first, last].
func New(first, last int, o Options) *Pool {
	p := &Pool{first: first, last: last, free: map[int]time.Time{}, used: map[int]bool{}, cooldown: o.Cooldown, now: o.Now}
	if p.now == nil {
		p.now = time.Now
	}
	for port := first; port <= last; port++ {
		p.queue = append(p.queue, port)
		p.free[port] = time.Time{}
	}
	if o.Probe != nil {
		p.probe = o.Probe
	} else if o.ProbeHost != "" {
		host := o.ProbeHost
		p.probe = func(port int) bool {
			l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return false
			}
			l.Close()
			return true
		}
	}
	return p
}

// Take reserves n ports, or none.
func (p *Pool) Take(n int) ([]int, error) {
	return p.take(n, true)
}

// TakeNoCooldown reserves n ports ignoring the reuse cooldown (the
// assign_port RPC does this).
func (p *Pool) TakeNoCooldown(n int) ([]int, error) { return p.take(n, false) }

func (p *Pool) take(n int, honourCooldown bool) ([]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var got []int
	var skipped []int
	busy := 0 // refused by the probe: another process holds them
	for len(got) < n && len(p.queue) > 0 {
		port := p.queue[0]
		p.queue = p.queue[1:]
		released := p.free[port]
		if honourCooldown && !released.IsZero() && now.Sub(released) < p.cooldown {
			skipped = append(skipped, port)
			continue
		}
		if p.probe != nil && !p.probe(port) {
			skipped = append(skipped, port)
			busy++
			continue
		}
		got = append(got, port)
	}
	// Ports passed over keep their place at the front, in order.
	p.queue = append(skipped, p.queue...)
	if len(got) < n {
		p.queue = append(got, p.queue...)
		free := p.freeCountLocked(now, honourCooldown)
		if busy > 0 {
			return nil, fmt.Errorf("%w: need %d in %d-%d: %d not taken by a kernel, of which %d are held by another process on this host", ErrExhausted, n, p.first, p.last, free, busy)
		}
		return nil, fmt.Errorf("%w: need %d, %d free in %d-%d", ErrExhausted, n, free, p.first, p.last)
	}
	for _, port := range got {
		delete(p.free, port)
		p.used[port] = true
	}
	return got, nil
}

func (p *Pool) freeCountLocked(now time.Time, honourCooldown bool) int {
	c := 0
	for _, released := range p.free {
		if !honourCooldown || released.IsZero() || now.Sub(released) >= p.cooldown {
			c++
		}
	}
	return c
}

// Release returns ports; ports outside the range or not taken are ignored.
func (p *Pool) Release(ports ...int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for _, port := range ports {
		if !p.used[port] {
			continue
		}
		delete(p.used, port)
		p.free[port] = now
		p.queue = append(p.queue, port)
	}
}

// Discard marks ports as used without taking them from the front
// (recovery: containers already bound them). It reports ports outside
// the range or already used, which recovery logs.
func (p *Pool) Discard(ports ...int) (conflicts []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	drop := map[int]bool{}
	for _, port := range ports {
		if _, ok := p.free[port]; !ok {
			conflicts = append(conflicts, port)
			continue
		}
		delete(p.free, port)
		p.used[port] = true
		drop[port] = true
	}
	if len(drop) > 0 {
		q := p.queue[:0]
		for _, port := range p.queue {
			if !drop[port] {
				q = append(q, port)
			}
		}
		p.queue = q
	}
	return conflicts
}

// InUse returns how many ports are taken.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}

// IsUsed reports whether port is taken.
func (p *Pool) IsUsed(port int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used[port]
}

package agent

import (
	"sync"

	"github.com/bai-agent/bai-agent/internal/ports"
	"github.com/bai-agent/bai-agent/internal/resource"
)

// Shared is what the agents of one process share in multi-agent mode
// ([[agents]] with allocation-mode = "shared"): one allocator over the
// whole node, so that a kernel one agent admits takes its slots from every
// agent's view and no two agents over-allocate together, and one pool of
// host ports per port-range. The first agent built with it creates them;
// the others reuse them. With [resource] shared-overcommit (upstream's
// meaning of "shared") each agent keeps its own allocator and only the
// host ports are shared. The accelerator plugins are the process's: an
// agent built with Shared does not close them.
type Shared struct {
	mu    sync.Mutex
	alloc *resource.Allocator
	ports map[[2]int]*ports.Pool
}

// NewShared returns an empty Shared for the agents of one process.
func NewShared() *Shared { return &Shared{ports: map[[2]int]*ports.Pool{}} }

// allocator returns the shared allocator, built by build the first time.
func (s *Shared) allocator(build func() *resource.Allocator) (*resource.Allocator, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.alloc != nil {
		return s.alloc, false
	}
	s.alloc = build()
	return s.alloc, true
}

// portPool returns the pool of the range, built by build the first time.
func (s *Shared) portPool(r [2]int, build func() *ports.Pool) *ports.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.ports[r]; p != nil {
		return p
	}
	p := build()
	s.ports[r] = p
	return p
}

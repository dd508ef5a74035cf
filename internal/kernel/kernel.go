package kernel

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// State is a kernel lifecycle state; the values are the wire strings.
type State string

// Kernel states.
const (
	Preparing   State = "preparing"
	Pulling     State = "pulling"
	Creating    State = "creating"
	Running     State = "running"
	Restarting  State = "restarting"
	Terminating State = "terminating"
	Terminated  State = "terminated"
)

var edges = map[State][]State{
	Preparing:   {Pulling, Creating, Terminating, Terminated},
	Pulling:     {Creating, Terminating, Terminated},
	Creating:    {Running, Terminating, Terminated},
	Running:     {Restarting, Terminating, Terminated},
	Restarting:  {Running, Terminating, Terminated},
	Terminating: {Terminated},
	Terminated:  nil,
}

// ErrIllegalTransition is wrapped by Transition errors.
var ErrIllegalTransition = errors.New("illegal state transition")

// CanTransition reports whether from -> to is an edge.
func CanTransition(from, to State) bool {
	for _, s := range edges[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Termination records why and how a kernel ended.
type Termination struct {
	Reason   string
	ExitCode int
	// OOMKilled: the kernel exceeded its memory slot (exit 137 with
	// Docker's OOMKilled flag).
	OOMKilled bool
	// ShmExhausted: SIGBUS exit (135), shared memory beyond ShmSize.
	ShmExhausted bool
}

// Change is one recorded transition.
type Change struct {
	From, To State
	At       time.Time
	Reason   string
}

// Machine is the state holder embedded in a kernel. Safe for concurrent
// use.
type Machine struct {
	id      string
	mu      sync.Mutex
	state   State
	history []Change
	term    *Termination
	waiters []chan struct{}
	now     func() time.Time
}

// NewMachine starts a kernel in state initial (PREPARING for new kernels,
// RUNNING for kernels adopted at recovery).
func NewMachine(id string, initial State) *Machine {
	return &Machine{id: id, state: initial, now: time.Now, history: []Change{{To: initial, At: time.Now(), Reason: "created"}}}
}

// State returns the current state.
func (m *Machine) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Transition moves to `to`, recording reason.
func (m *Machine) Transition(to State, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !CanTransition(m.state, to) {
		return fmt.Errorf("kernel %s: %s -> %s: %w", m.id, m.state, to, ErrIllegalTransition)
	}
	m.history = append(m.history, Change{From: m.state, To: to, At: m.now(), Reason: reason})
	m.state = to
	if to == Terminated {
		for _, w := range m.waiters {
			close(w)
		}
		m.waiters = nil
	}
	return nil
}

// SetTermination records the termination details; the first reason sticks
// (later events reuse it, as the real agent does), exit details are
// filled in when they become known.
func (m *Machine) SetTermination(t Termination) Termination {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.term == nil {
		c := t
		m.term = &c
		return c
	}
	if m.term.Reason == "" {
		m.term.Reason = t.Reason
	}
	if t.ExitCode != 0 && m.term.ExitCode <= 0 {
		m.term.ExitCode = t.ExitCode
	}
	m.term.OOMKilled = m.term.OOMKilled || t.OOMKilled
	m.term.ShmExhausted = m.term.ShmExhausted || t.ShmExhausted
	return *m.term
}

// Termination returns the recorded termination, if any.
func (m *Machine) Termination() (Termination, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.term == nil {
		return Termination{}, false
	}
	return *m.term, true
}

// ClearTermination forgets a termination (a restart that succeeded).
func (m *Machine) ClearTermination() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.term = nil
}

// History returns a copy of the recorded transitions.
func (m *Machine) History() []Change {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Change{}, m.history...)
}

// Done returns a channel closed once the kernel is TERMINATED.
func (m *Machine) Done() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan struct{})
	if m.state == Terminated {
		close(ch)
		return ch
	}
	m.waiters = append(m.waiters, ch)
	return ch
}

// ClassifyExit turns a container exit into a termination: 137 with the
// OOMKilled flag is out-of-memory, 135 (128+SIGBUS) is shared-memory
// exhaustion.
func ClassifyExit(code int, oomKilled bool) Termination {
	t := Termination{ExitCode: code}
	if oomKilled {
		t.OOMKilled = true
	}
	if code == 135 {
		t.ShmExhausted = true
	}
	return t
}

package agent

import (
	"context"
	"sync"
)

// keyedMutex serializes lifecycle work per kernel id.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{}
	refs int
}

// ref returns key's entry with one more reference.
func (m *keyedMutex) ref(key string) *keyedEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks == nil {
		m.locks = map[string]*keyedEntry{}
	}
	e, ok := m.locks[key]
	if !ok {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	return e
}

// unref drops a reference; the last one removes the entry.
func (m *keyedMutex) unref(key string, e *keyedEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(m.locks, key)
	}
}

// tryLock takes the lock only if it is free (the sync loop skips a kernel
// that lifecycle work holds, rather than wait behind it).
func (m *keyedMutex) tryLock(key string) (func(), bool) {
	e := m.ref(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; m.unref(key, e) }, true
	default:
		m.unref(key, e)
		return nil, false
	}
}

func (m *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	e := m.ref(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; m.unref(key, e) }, nil
	case <-ctx.Done():
		m.unref(key, e)
		return nil, ctx.Err()
	}
}

package volumes

import "sync"

// Serial runs submitted functions in submission order per key and
// different keys in parallel, at most limit at a time. Submit never
// blocks, so a reader feeding it (the Redis subscription) is never held
// up by a slow function; each function is expected to bound itself (the
// commands here have deadlines).
type Serial struct {
	mu     sync.Mutex
	queues map[string][]func()
	slots  chan struct{}
	wg     sync.WaitGroup
}

// NewSerial makes a Serial running at most limit functions at once
// (limit < 1 means 1).
func NewSerial(limit int) *Serial {
	if limit < 1 {
		limit = 1
	}
	return &Serial{queues: map[string][]func(){}, slots: make(chan struct{}, limit)}
}

// Submit queues fn behind the functions already queued for key.
func (s *Serial) Submit(key string, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, running := s.queues[key]
	s.queues[key] = append(q, fn)
	if running {
		return // the key's worker will get to it
	}
	s.wg.Add(1)
	go s.work(key)
}

// work drains key's queue, one function at a time, each holding a slot.
func (s *Serial) work(key string) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		q := s.queues[key]
		if len(q) == 0 {
			delete(s.queues, key)
			s.mu.Unlock()
			return
		}
		fn := q[0]
		s.queues[key] = q[1:]
		s.mu.Unlock()
		s.slots <- struct{}{}
		fn()
		<-s.slots
	}
}

// Wait returns when every submitted function has run.
func (s *Serial) Wait() { s.wg.Wait() }

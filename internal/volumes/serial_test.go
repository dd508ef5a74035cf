package volumes

import (
	"sync"
	"testing"
	"time"
)

// One key's functions run in order; a blocked key holds up no other.
func TestSerialOrderAndIndependence(t *testing.T) {
	s := NewSerial(4)
	var mu sync.Mutex
	var order []int
	block := make(chan struct{})
	s.Submit("slow", func() { <-block })
	for i := range 50 {
		s.Submit("a", func() { mu.Lock(); order = append(order, i); mu.Unlock() })
	}
	otherDone := make(chan struct{})
	s.Submit("b", func() { close(otherDone) })
	slowNext := make(chan struct{})
	s.Submit("slow", func() { close(slowNext) })
	select {
	case <-otherDone:
	case <-time.After(5 * time.Second):
		t.Fatal("key b waited for the blocked key")
	}
	select {
	case <-slowNext:
		t.Fatal("a function of the blocked key ran before the one ahead of it")
	case <-time.After(50 * time.Millisecond):
	}
	close(block)
	s.Wait()
	for i, v := range order {
		if i != v {
			t.Fatalf("order %v", order)
		}
	}
	if len(order) != 50 {
		t.Fatalf("%d of 50 ran", len(order))
	}
}

// At most limit functions run at once.
func TestSerialLimit(t *testing.T) {
	s := NewSerial(2)
	var mu sync.Mutex
	cur, peak := 0, 0
	// The first two wait for each other: they must run together (a
	// limit of 1 would hang them until the timeout); the rest may not
	// push the count above 2.
	var both sync.WaitGroup
	both.Add(2)
	for i := range 10 {
		first := i < 2
		s.Submit(string(rune('a'+i)), func() {
			mu.Lock()
			cur++
			peak = max(peak, cur)
			mu.Unlock()
			if first {
				both.Done()
				done := make(chan struct{})
				go func() { both.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
				}
			}
			mu.Lock()
			cur--
			mu.Unlock()
		})
	}
	s.Wait()
	if peak != 2 {
		t.Fatalf("peak concurrency %d, want 2", peak)
	}
}

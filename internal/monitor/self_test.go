package monitor

import (
	"testing"
	"time"
)

// One sample of the process serves every agent of it for selfSampleTTL;
// the next one measures the CPU used since.
func TestSelfSamplerSharedAndCPU(t *testing.T) {
	s := &selfSampler{}
	f1 := s.sample()
	if f1.rss <= 0 || f1.vms <= 0 || f1.fds <= 0 || f1.goroutines <= 0 {
		t.Fatalf("first sample %+v", f1)
	}
	if f1.cpuValid {
		t.Fatalf("a first sample has no CPU share to give: %+v", f1)
	}
	if f2 := s.sample(); f2 != f1 {
		t.Fatalf("a second agent within the TTL got a new sample: %+v then %+v", f1, f2)
	}
	// Expire the sample and burn about 300 ms of CPU over about 300 ms.
	s.mu.Lock()
	s.at = s.at.Add(-selfSampleTTL)
	s.mu.Unlock()
	end := time.Now().Add(300 * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		n++
	}
	f3 := s.sample()
	if !f3.cpuValid || f3.cpuPct < 5 { // low: a loaded CI machine shares the core
		t.Fatalf("after a busy loop (%d turns) the CPU share is %+v", n, f3)
	}
}

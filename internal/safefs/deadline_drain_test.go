package safefs

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Drain waits for the calls in flight, then refuses every new one.
func TestLimiterDrain(t *testing.T) {
	l := NewLimiter(2)
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := DoLimited(context.Background(), l, "held", func(context.Context) (int, error) {
			close(started)
			<-release
			return 1, nil
		})
		done <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := l.Drain(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a call in flight: %v, want a deadline error", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Drain(context.Background()); err != nil {
		t.Fatalf("Drain once the call ended: %v", err)
	}
	if _, err := DoLimited(context.Background(), l, "after", func(context.Context) (int, error) { return 0, nil }); !errors.Is(err, ErrBusy) {
		t.Fatalf("a call after Drain: %v, want ErrBusy", err)
	}
}

package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A plugin call that hangs costs its caller only the deadline, and the
// plugin is skipped (not called again) until the hung call returns.
func TestCallWithDeadline(t *testing.T) {
	old := measureDeadline
	measureDeadline = 100 * time.Millisecond
	defer func() { measureDeadline = old }()
	release := make(chan struct{})
	var calls atomic.Int32
	hang := func(ctx context.Context) (int, error) {
		calls.Add(1)
		<-release
		return 1, nil
	}
	t0 := time.Now()
	if _, err := callWithDeadline(context.Background(), "t/hang", hang); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung call: %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("the hung call held the caller %s", d)
	}
	if _, err := callWithDeadline(context.Background(), "t/hang", hang); !errors.Is(err, context.DeadlineExceeded) || calls.Load() != 1 {
		t.Fatalf("a still-hung plugin was called again: calls=%d err=%v", calls.Load(), err)
	}
	// Other plugins are unaffected.
	if v, err := callWithDeadline(context.Background(), "t/ok", func(context.Context) (int, error) { return 7, nil }); err != nil || v != 7 {
		t.Fatalf("healthy plugin: %v %v", v, err)
	}
	close(release)
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, err := callWithDeadline(context.Background(), "t/hang", func(context.Context) (int, error) { return 2, nil })
		if err == nil && v == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin was not called again after its hung call returned")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

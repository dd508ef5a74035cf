package safefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// A walk (download_file) stops at its deadline. Before, Do answered the
// caller with a TimeoutError but Walk/ReadDir never looked at the
// context, so the goroutine went on fstat-ing the kernel's tree and kept
// one of the 256 process-wide slots. Those slots are shared by every
// kernel and by the agent's own writes at creation (writeScratchFile), so
// one kernel with a large tree (hard links cost no inodes) and a few
// hundred download_file calls makes every file RPC and every kernel
// creation on the node fail with ErrBusy.
func TestWalkStopsAtDeadline(t *testing.T) {
	dir := t.TempDir()
	// 40 folders x 3000 entries: far below the 64-level / 100 000-entry
	// bounds, several hundred ms of fstatat.
	for d := 0; d < 40; d++ {
		sub := filepath.Join(dir, "t", "d"+strconv.Itoa(d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		seed := filepath.Join(dir, "seed"+strconv.Itoa(d))
		if err := os.WriteFile(seed, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3000; i++ {
			if err := os.Link(seed, filepath.Join(sub, "f"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var visited atomic.Int64
	var finished, stop atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	_, err = Do(ctx, "download_file", func(ctx context.Context) (struct{}, error) {
		defer finished.Store(true)
		return struct{}{}, r.Walk(ctx, "t", 64, 100_000, func(string, *Info) error {
			if stop.Load() {
				return errors.New("probe over")
			}
			visited.Add(1)
			time.Sleep(20 * time.Microsecond) // a slow disk
			return nil
		})
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a walk of 120 000 entries finished within 5 ms: %v", err)
	}
	at := visited.Load()
	time.Sleep(300 * time.Millisecond)
	after := visited.Load()
	if after > at+100 {
		t.Errorf("the walk went on after its deadline had been answered: %d entries at the deadline, %d 300 ms later (finished: %v); it holds a process-wide slot (inflight now %d/%d) while it runs",
			at, after, finished.Load(), len(defaultLimiter.slots), maxInflight)
	}
	stop.Store(true)
	for !finished.Load() {
		time.Sleep(10 * time.Millisecond)
	}
}

// A limiter's stuck calls starve only that limiter: another (the agent's
// own, another kernel's) still runs.
func TestLimiterIsolatesStuckCalls(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	mine := NewLimiter(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := DoLimited(ctx, mine, "stuck", func(context.Context) (int, error) { <-block; return 0, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stuck call: %v", err)
	}
	if _, err := DoLimited(context.Background(), mine, "next", func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, ErrBusy) {
		t.Fatalf("a call on the full limiter: %v, want ErrBusy", err)
	}
	if v, err := Do(context.Background(), "other", func(context.Context) (int, error) { return 2, nil }); err != nil || v != 2 {
		t.Fatalf("a call on another limiter: %v %v", v, err)
	}
}

package observer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis's pool reaper of clients closed by t.Cleanup.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// destroyCall is one DestroyKernel call the fake agent saw.
type destroyCall struct {
	ID, SessionID, Reason string
	Suppress              bool
}

// fakeAgent is a registry of kernels; DestroyKernel removes one.
type fakeAgent struct {
	mu      sync.Mutex
	kernels []Kernel
	calls   []destroyCall
	fail    map[string]error
	// block, when set, holds every destroy until it is closed.
	block chan struct{}
}

func (f *fakeAgent) ListKernels() []Kernel {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Kernel(nil), f.kernels...)
}

func (f *fakeAgent) DestroyKernel(ctx context.Context, id, sid, reason string, suppress bool) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, destroyCall{id, sid, reason, suppress})
	if err := f.fail[id]; err != nil {
		return err
	}
	for i, k := range f.kernels {
		if k.ID == id {
			f.kernels = append(f.kernels[:i], f.kernels[i+1:]...)
			break
		}
	}
	return nil
}

func (f *fakeAgent) Calls() []destroyCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]destroyCall(nil), f.calls...)
}

// fakePresence is a PresenceStore in memory that can be made to fail.
type fakePresence struct {
	mu       sync.Mutex
	agent    map[string]string
	presence map[string]map[string]string
	err      error
	reads    int
	panicky  bool
}

var errOutage = errors.New("connection refused (fake outage)")

func (f *fakePresence) AgentLastCheck(ctx context.Context, id string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.panicky {
		panic("fake store panic")
	}
	if f.err != nil {
		return "", false, f.err
	}
	v, ok := f.agent[id]
	return v, ok, nil
}

func (f *fakePresence) KernelPresence(ctx context.Context, ids []string) (map[string]map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]map[string]string{}
	for _, id := range ids {
		if h, ok := f.presence[id]; ok {
			out[id] = h
		}
	}
	return out, nil
}

func (f *fakePresence) Reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func (f *fakePresence) set(fn func(*fakePresence)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeAbuseStore records the hashes written.
type fakeAbuseStore struct {
	mu     sync.Mutex
	hashes []map[string]string
	err    error
}

func (f *fakeAbuseStore) ReplaceAbuseReport(ctx context.Context, h map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	c := map[string]string{}
	for k, v := range h {
		c[k] = v
	}
	f.hashes = append(f.hashes, c)
	return nil
}

func (f *fakeAbuseStore) Last() (map[string]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.hashes) == 0 {
		return nil, 0
	}
	return f.hashes[len(f.hashes)-1], len(f.hashes)
}

// poll waits for cond, failing the test at the deadline.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeFile(t *testing.T, p string, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testLog writes the observers' records to the test's log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

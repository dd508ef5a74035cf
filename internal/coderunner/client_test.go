package coderunner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/krunner"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"golang.org/x/sys/unix"
)

// freePort is a loopback port below the ephemeral range (testutil's
// window): a port taken from ":0" and released is in the range every
// outgoing connection of the machine draws from, and another process can
// take it before the test binds it again.
func freePort(t *testing.T) int { return testutil.FreePort(t) }

// pair starts a real runner in-process and a client connected to it.
func pair(t *testing.T, runtime string) *Client {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in, out := freePort(t), freePort(t)
	// The client dials first: libzmq queues until the runner binds.
	c, err := Dial("127.0.0.1", in, out, log)
	if err != nil {
		t.Fatal(err)
	}
	r, err := krunner.New(krunner.Options{Runtime: runtime, Addr: "127.0.0.1", InPort: in, OutPort: out, SSHPorts: []int{freePort(t)}, TermPorts: []int{freePort(t)}, WorkDir: t.TempDir(), ConfigDir: t.TempDir(), Env: []string{"PATH=" + os.Getenv("PATH")}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Serve(ctx); close(done) }()
	t.Cleanup(func() { c.Close(); cancel(); <-done })
	return c
}

func dur(d time.Duration) *time.Duration { return &d }

func TestHandshakeAndQuery(t *testing.T) {
	c := pair(t, "shell")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st <= 0 {
		t.Fatalf("status %v %v", st, err)
	}
	apps, err := c.Apps(ctx)
	if err != nil || apps["status"] != "done" {
		t.Fatalf("apps %v %v", apps, err)
	}
	res, err := c.Execute(ctx, Request{RunID: "r1", Mode: "query", Code: "echo hi; echo oops >&2; echo there", APIVersion: 3, Flush: dur(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if res["status"] != "finished" || res["exitCode"] != 0 || res["runId"] != "r1" || fmt.Sprint(res["files"]) != "[]" {
		t.Fatalf("result %v", res)
	}
	// stdout and stderr records are aggregated in arrival order.
	if got := fmt.Sprint(res["console"]); !strings.Contains(got, "hi\n") || !strings.Contains(got, "[stderr oops\n]") {
		t.Fatalf("console %s", got)
	}
	res, _ = c.Execute(ctx, Request{Mode: "query", Code: "echo v1", APIVersion: 1, Flush: dur(10 * time.Second)})
	if res["stdout"] != "v1\n" || res["stderr"] != "" {
		t.Fatalf("api v1 result %v", res)
	}
}

func TestStreamingContinueAndInput(t *testing.T) {
	c := pair(t, "shell")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Execute(ctx, Request{RunID: "s", Mode: "query", Code: "for i in 0 1 2; do echo $i; sleep 0.4; done", APIVersion: 3, Flush: dur(300 * time.Millisecond)})
	if err != nil || res["status"] != "continued" || res["exitCode"] != nil {
		t.Fatalf("first call %v %v", res, err)
	}
	out := fmt.Sprint(res["console"])
	for res["status"] == "continued" {
		if res, err = c.Execute(ctx, Request{RunID: "s", Mode: "continue", APIVersion: 3, Flush: dur(300 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprint(res["console"])
	}
	if res["status"] != "finished" || strings.Count(out, "\n") != 3 {
		t.Fatalf("streamed %q, last %v", out, res)
	}
	// Batch: clean-finished, build-finished, finished.
	var statuses []string
	res, _ = c.Execute(ctx, Request{RunID: "b", Mode: "batch", Opts: map[string]any{"exec": "echo batch"}, APIVersion: 3, Flush: dur(5 * time.Second)})
	statuses = append(statuses, res["status"].(string))
	for res["status"] != "finished" {
		res, _ = c.Execute(ctx, Request{RunID: "b", Mode: "continue", APIVersion: 3, Flush: dur(5 * time.Second)})
		statuses = append(statuses, res["status"].(string))
	}
	if strings.Join(statuses, ",") != "clean-finished,build-finished,finished" || fmt.Sprint(res["console"]) != "[[stdout batch\n]]" {
		t.Fatalf("batch %v %v", statuses, res)
	}
}

// Two runs at once: the second waits for the first; outputs never mix.
func TestRunsQueue(t *testing.T) {
	c := pair(t, "shell")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make([]map[string]any, 2)
	for i, code := range []string{"sleep 0.5; echo first", "echo second"} {
		wg.Add(1)
		go func(i int, code string) {
			defer wg.Done()
			if i == 1 {
				time.Sleep(100 * time.Millisecond)
			}
			results[i], _ = c.Execute(ctx, Request{RunID: fmt.Sprint("q", i), Mode: "query", Code: code, APIVersion: 3})
		}(i, code)
	}
	wg.Wait()
	if fmt.Sprint(results[0]["console"]) != "[[stdout first\n]]" || fmt.Sprint(results[1]["console"]) != "[[stdout second\n]]" {
		t.Fatalf("%v / %v", results[0], results[1])
	}
}

func TestIncrementalUTF8(t *testing.T) {
	r := &run{dec: map[string][]byte{}}
	s := "héllo ☃"
	b := []byte(s)
	var got string
	for i := range b {
		got += r.decode("stdout", b[i:i+1], false)
	}
	if got != s {
		t.Fatalf("byte by byte: %q", got)
	}
	got = r.decode("stdout", []byte{'a', 0xff, 'b', 0xe2, 0x98}, false)
	got += r.decode("stdout", nil, true)
	if got != "a\uFFFDb\uFFFD\uFFFD" && got != "a\uFFFDb\uFFFD" {
		t.Fatalf("invalid bytes: %q", got)
	}
	if _, err := parseStartedAt([]byte{0x81, 0xa1, 'x', 0x01}); err == nil {
		t.Fatal("a status without started_at accepted")
	}
}

// A caller that gives up while its run waits in line does not leave the
// run in the line: later runs still get their turn.
func TestAbandonedWaiterDoesNotBlock(t *testing.T) {
	c := pair(t, "shell")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan map[string]any, 1)
	go func() {
		r, _ := c.Execute(ctx, Request{RunID: "first", Mode: "query", Code: "sleep 0.5; echo one", APIVersion: 3})
		done <- r
	}()
	time.Sleep(100 * time.Millisecond)
	wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if _, err := c.Execute(wctx, Request{RunID: "quitter", Mode: "query", Code: "echo never", APIVersion: 3}); err == nil {
		t.Fatal("a run queued behind a busy one did not wait")
	}
	wcancel()
	<-done
	r, err := c.Execute(ctx, Request{RunID: "third", Mode: "query", Code: "echo three", APIVersion: 3, Flush: dur(10 * time.Second)})
	if err != nil || r["status"] != "finished" || fmt.Sprint(r["console"]) != "[[stdout three\n]]" {
		t.Fatalf("the run after an abandoned one: %v %v", r, err)
	}
}

// An idle client sleeps in Go's network poller, not in a system call: a
// node's hundreds of kernels must not hold an OS thread each (a client
// blocked in poll(2) did) nor more than one goroutine, and a client still
// answers at once after a long idle wait.
func TestIdleClientsHoldNoThreads(t *testing.T) {
	threads := func() int {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal("no /proc/self/task:", err)
		}
		return len(ents)
	}
	c := pair(t, "shell") // libzmq's threads and the runner's exist first
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	before, goroutines := threads(), runtime.NumGoroutine()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const n = 64
	for i := 0; i < n; i++ {
		// Nothing listens: libzmq keeps reconnecting in its I/O thread,
		// the client waits for its runner.
		idle, err := Dial("127.0.0.1", freePort(t), freePort(t), log)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
	}
	time.Sleep(time.Second)
	if grew := threads() - before; grew > n/4 {
		t.Fatalf("%d idle clients added %d OS threads", n, grew)
	}
	// One goroutine each: the socket goroutine sleeps in the poller itself.
	if grew := runtime.NumGoroutine() - goroutines; grew > n+4 {
		t.Fatalf("%d idle clients added %d goroutines", n, grew)
	}
	// The first client, idle meanwhile, answers promptly.
	t0 := time.Now()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Fatalf("status after an idle wait took %s", took)
	}
}

// The client's wait on libzmq's descriptor (an eventfd): a signal that
// came before the wait began ends it at once (the poller forgets a
// readiness seen before a read starts: the wait must look first, or a
// reply waits for the next status ping); without one it lasts until the
// deadline; interrupt ends it early.
func TestFdWait(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal("eventfd:", err)
	}
	defer unix.Close(efd)
	w, err := waitOn(efd)
	if err != nil {
		t.Fatal(err)
	}
	defer w.f.Close()
	timed := func(deadline time.Duration, during func()) time.Duration {
		_ = w.f.SetReadDeadline(time.Now().Add(deadline))
		if during != nil {
			go during()
		}
		t0 := time.Now()
		w.wait()
		return time.Since(t0)
	}
	tests := []struct {
		name     string
		before   func()
		during   func()
		deadline time.Duration
		min, max time.Duration
	}{
		{"signalled before the wait", func() {
			_, _ = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
			time.Sleep(20 * time.Millisecond) // the poller has seen it
		}, nil, 2 * time.Second, 0, 500 * time.Millisecond},
		{"nothing: the deadline", func() {
			var b [8]byte
			_, _ = unix.Read(efd, b[:]) // as libzmq does when it processes commands
		}, nil, 300 * time.Millisecond, 250 * time.Millisecond, 2 * time.Second},
		{"interrupted", nil, func() {
			time.Sleep(100 * time.Millisecond)
			w.interrupt()
		}, 5 * time.Second, 50 * time.Millisecond, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			if took := timed(tc.deadline, tc.during); took < tc.min || took > tc.max {
				t.Fatalf("the wait took %s, want %s to %s", took, tc.min, tc.max)
			}
		})
	}
}

// A dial that fails (keys libzmq refuses) closes what it opened: every
// libzmq socket holds a descriptor (its mailbox) until libzmq's reaper has
// closed it, so a leak shows in the process's descriptors.
func TestFailedDialLeavesNothingOpen(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	bad := &Curve{ServerPublic: "not a key", ClientPublic: "nor this", ClientSecret: "x"}
	// The shared context exists first (its own descriptors are not a leak).
	if c, err := DialCurve("127.0.0.1", freePort(t), freePort(t), bad, log); err == nil {
		c.Close()
		t.Fatal("a dial with malformed CURVE keys succeeded")
	}
	before := fds()
	for i := 0; i < 50; i++ {
		if _, err := DialCurve("127.0.0.1", freePort(t), freePort(t), bad, log); err == nil {
			t.Fatal("a dial with malformed CURVE keys succeeded")
		}
	}
	// libzmq closes a socket in its reaper thread, a moment after Close.
	deadline := time.Now().Add(5 * time.Second)
	for fds()-before > 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if grew := fds() - before; grew > 5 {
		t.Fatalf("50 failed dials left %d more descriptors open", grew)
	}
}

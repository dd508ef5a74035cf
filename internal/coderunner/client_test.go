package coderunner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/krunner"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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

package coderunner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// A reply joins thousands of 4-KiB records: joined by repeated
// concatenation, 2000 of them copy ~8 GB (a core for seconds per call, for
// every kernel that prints fast); with a builder, a few times the 8 MiB.
func TestShapeJoinsInLinearTime(t *testing.T) {
	chunk := strings.Repeat("y", 4096)
	recs := make([]Record, 2000)
	for i := range recs {
		recs[i] = Record{"stdout", chunk}
	}
	for _, api := range []int{1, 3} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		res := shape("r", "continued", nil, nil, recs, api)
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 128<<20 {
			t.Errorf("API %d: joining 8 MiB allocated %d MiB", api, got>>20)
		}
		var out string
		if api == 1 {
			out = res["stdout"].(string)
		} else {
			out = res["console"].([]any)[0].([]any)[1].(string)
		}
		if len(out) != len(recs)*len(chunk) {
			t.Errorf("API %d: %d bytes joined, want %d", api, len(out), len(recs)*len(chunk))
		}
	}
}

// fakeRunner binds the runner's two sockets with libzmq, as a hostile
// runner in a kernel would: it answers nothing and pushes what it likes.
func fakeRunner(t *testing.T) (c *Client, push *zmq.Socket) {
	t.Helper()
	in, out := freePort(t), freePort(t)
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	pull, _ := zctx.NewSocket(zmq.PULL)
	push, _ = zctx.NewSocket(zmq.PUSH)
	for _, s := range []*zmq.Socket{pull, push} {
		_ = s.SetLinger(0)
	}
	if err := pull.Bind(fmt.Sprintf("tcp://127.0.0.1:%d", in)); err != nil {
		t.Fatal(err)
	}
	if err := push.Bind(fmt.Sprintf("tcp://127.0.0.1:%d", out)); err != nil {
		t.Fatal(err)
	}
	c, err = Dial("127.0.0.1", in, out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		pull.Close()
		push.Close()
		_ = zctx.Term()
	})
	return c, push
}

// A runner that displays far more than anyone collects (250-MiB HTML,
// display() in a loop) does not grow the agent past RunQueueBytes; an
// over-large record is dropped whole; every reply is bounded; the run
// still ends, and its owner learns how much was dropped.
func TestRunOutputIsBounded(t *testing.T) {
	c, push := fakeRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Attach the run (the "code" goes to the fake, which ignores it).
	if r, err := c.Execute(ctx, Request{RunID: "r", Mode: "query", Code: "x", APIVersion: 3, Flush: dur(10 * time.Millisecond)}); err != nil || r["status"] != "continued" {
		t.Fatalf("attach: %v %v", r, err)
	}
	big := strings.Repeat("h", 4<<20)
	const n = 40 // 160 MiB offered
	if _, err := push.SendMessage("html", strings.Repeat("x", MaxRecord+1)); err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := push.SendMessage("html", big); err != nil {
			t.Fatal(err)
		}
	}
	// A kind no runner sends, and a "finished" far larger than one: the
	// first is dropped, the second kept (the run must end) without its
	// payload.
	bogus := strings.Repeat("k", 1<<20)
	if _, err := push.SendMessage("bogus-kind", bogus); err != nil {
		t.Fatal(err)
	}
	fin := `{"exitCode":0,"pad":"` + strings.Repeat("p", 100<<10) + `"}`
	if _, err := push.SendMessage("finished", fin); err != nil {
		t.Fatal(err)
	}
	// Everything is dispatched before the test collects: the run holds
	// at most RunQueueBytes meanwhile.
	c.mu.Lock()
	run := c.runs["r"]
	c.mu.Unlock()
	// Every byte offered is either queued or dropped.
	total := int64(MaxRecord+1) + n*int64(len(big)) + int64(len("bogus-kind")+len(bogus)) + int64(len(fin)) + int64(len("{}"))
	deadline := time.Now().Add(30 * time.Second)
	for run.queued.Load()+run.dropped.Load() != total {
		if time.Now().After(deadline) {
			t.Fatalf("the records were not dispatched: %d queued, %d dropped of %d", run.queued.Load(), run.dropped.Load(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if q := run.queued.Load(); q > RunQueueBytes+maxTerminal { // + the terminal record
		t.Fatalf("the run holds %d MiB, over %d MiB", q>>20, RunQueueBytes>>20)
	}
	got, replies := 0, 0
	stderr := ""
	var last map[string]any
	for {
		r, err := c.Execute(ctx, Request{RunID: "r", Mode: "continue", APIVersion: 3, Flush: dur(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		replies++
		size := 0
		for _, rec := range r["console"].([]any) {
			e := rec.([]any)
			if s, ok := e[1].(string); ok {
				size += len(s)
				switch e[0] {
				case "bogus-kind":
					t.Fatal("a record of a kind no runner sends reached the reply")
				case "html":
					got += len(s)
				case "stderr":
					stderr += s
				}
			}
		}
		if size > MaxReply+len(big) {
			t.Fatalf("one reply of %d MiB", size>>20)
		}
		last = r
		if r["status"] == "finished" || replies > n+2 {
			break
		}
	}
	if last["status"] != "finished" || last["exitCode"] != nil {
		t.Fatalf("the run did not end as it should: %v, exit %v", last["status"], last["exitCode"])
	}
	if got > RunQueueBytes || got == 0 {
		t.Fatalf("%d MiB of HTML delivered, want some and at most %d MiB", got>>20, RunQueueBytes>>20)
	}
	if !strings.Contains(stderr, "were dropped") {
		t.Fatalf("no note of the dropped output: %q", stderr)
	}
	t.Logf("%d MiB of %d MiB delivered in %d replies", got>>20, n*len(big)>>20, replies)
}

// A runner that stops reading (SIGSTOP, or gone while the engine cannot
// say) does not wedge the client: sends past the queue are dropped, and
// Close returns, so destroy can release the kernel's slots and ports.
func TestStoppedRunnerDoesNotWedgeClose(t *testing.T) {
	// Connected to ports where nothing listens: libzmq queues, never sends.
	c, err := Dial("127.0.0.1", freePort(t), freePort(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("i", 64<<10)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range 4 * sendQueue {
			if err := c.enqueue("input", payload); err != nil {
				return
			}
		}
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("enqueueing to a runner that does not read blocked")
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a runner that does not read")
	}
}

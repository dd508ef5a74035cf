package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc"
	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The Go client against the agent's own server over ZeroMQ: results,
// FAILURE replies as RemoteError with the Python exception name, a
// cancelled call answered CANCELLED, and a dead address refused.
func TestClientAgainstServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := rpc.NewServer(log, "i-client-test")
	srv.Register("echo", func(_ context.Context, c *rpc.Call) (any, error) {
		v, err := c.Required(0, "msg")
		return v, err
	})
	srv.Register("fail", func(context.Context, *rpc.Call) (any, error) {
		return nil, &rpc.PyError{Name: "ValueError", Msg: "bad value"}
	})
	release := make(chan struct{})
	srv.Register("slow", func(ctx context.Context, _ *rpc.Call) (any, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-release:
			return "late", nil
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	tr, err := zmq.Listen(ctx, log, addr, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c, err := client.Dial("tcp://"+tr.Addr(), 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	tests := []struct {
		name     string
		meth     string
		args     []any
		want     any
		wantName string
	}{
		{"result", "echo", []any{"hello"}, "hello", ""},
		{"nested result", "echo", []any{map[string]any{"a": []any{int64(1), "b"}}}, nil, ""},
		{"failure", "fail", nil, nil, "ValueError"},
		{"missing argument", "echo", nil, nil, "TypeError"},
		{"unknown method", "nosuch", nil, nil, "KeyError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			v, err := c.Call(cctx, tt.meth, tt.args, nil)
			if tt.wantName != "" {
				var re *client.RemoteError
				if !errors.As(err, &re) || re.Name != tt.wantName {
					t.Fatalf("error %v, want a %s RemoteError", err, tt.wantName)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && v != tt.want {
				t.Fatalf("got %#v, want %#v", v, tt.want)
			}
			if tt.want == nil && v == nil {
				t.Fatal("no result")
			}
		})
	}

	// A call whose context ends is cancelled on the server too.
	cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer ccancel()
	if _, err := c.Call(cctx, "slow", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v", err)
	}
	close(release)
	// The client keeps working after a cancelled call (a late reply is
	// skipped).
	v, err := c.Call(context.Background(), "echo", []any{"again"}, nil)
	if err != nil || v != "again" {
		t.Fatalf("after cancel: %v %v", v, err)
	}

	if _, err := client.Dial(fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)), 300*time.Millisecond, nil); !errors.Is(err, client.ErrNoHandshake) {
		t.Fatalf("dial to nothing: %v", err)
	}

	// The server polls with a long timeout while idle; closing wakes it
	// (a multi-agent process closes its agents one after another).
	// The last request was about 400 ms ago (the dead dial above, then
	// this pause): without the wake-up Close would wait out the rest of
	// the poll's second.
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	tr.Close()
	if took := time.Since(t0); took > testutil.Slow(600*time.Millisecond) {
		t.Fatalf("closing an idle transport took %s", took)
	}
}

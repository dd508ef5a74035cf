package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc"
	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/telemetry"
	"github.com/bai-agent/bai-agent/internal/telemetry/otlptest"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func start(t *testing.T, o telemetry.Options) *telemetry.Provider {
	t.Helper()
	if o.ServiceName == "" {
		o.ServiceName, o.ServiceVersion, o.InstanceID, o.InstanceName = "agent", "26.0.0", "0b1e9e0c-0000-4000-8000-000000000001", "agent-i-otel"
	}
	p, err := telemetry.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

// One span per RPC call through the real server over ZeroMQ: its name,
// the method and agent id, the resource as upstream's to_resource, and
// a failure's exception name as the span's error status.
func TestRPCSpans(t *testing.T) {
	recv := otlptest.Start(t)
	p := start(t, telemetry.Options{Endpoint: recv.URL, AgentID: "i-otel", BatchTimeout: 50 * time.Millisecond})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := rpc.NewServer(log, "i-otel")
	srv.SetTracer(p.RPC)
	srv.Register("echo", func(_ context.Context, c *rpc.Call) (any, error) { return c.Required(0, "msg") })
	srv.Register("fail", func(context.Context, *rpc.Call) (any, error) {
		return nil, &rpc.PyError{Name: "ValueError", Msg: "bad value"}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr, err := zmq.Listen(ctx, log, fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c, err := client.Dial("tcp://"+tr.Addr(), 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if _, err := c.Call(cctx, "echo", []any{"hi"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(cctx, "fail", nil, nil); err == nil {
		t.Fatal("fail succeeded")
	}
	ok := recv.Wait(t, 10*time.Second, "rpc.echo")
	if ok.Attr("rpc.method") != "echo" || ok.Attr("backendai.agent.id") != "i-otel" || ok.Status.GetCode() == 2 {
		t.Fatalf("echo span %v", ok)
	}
	want := map[string]string{"service.name": "agent", "service.version": "26.0.0", "service.instance.id": "0b1e9e0c-0000-4000-8000-000000000001", "service.instance.name": "agent-i-otel"}
	for k, v := range want {
		if ok.Resource[k] != v {
			t.Fatalf("resource %s = %q, want %q", k, ok.Resource[k], v)
		}
	}
	bad := recv.Wait(t, 10*time.Second, "rpc.fail")
	if bad.Attr("exception.type") != "ValueError" || bad.Status.GetCode() != 2 {
		t.Fatalf("fail span %v", bad)
	}
}

// A collector that hangs or refuses connections never slows span
// creation (spans beyond the queue are dropped), and Shutdown returns
// within its deadline.
func TestCollectorDownDoesNotBlock(t *testing.T) {
	hang := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(hang)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	for name, url := range map[string]string{"hanging": hung.URL, "refusing": closedURL} {
		t.Run(name, func(t *testing.T) {
			p, err := telemetry.Start(context.Background(), telemetry.Options{
				Endpoint: url, AgentID: "i-down", MaxQueueSize: 256, MaxExportBatchSize: 64,
				BatchTimeout: 10 * time.Millisecond, ExportTimeout: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			for i := 0; i < 2000; i++ {
				ctx, end := p.RPC(context.Background(), "ping", "i-down")
				_, endStep := p.Start(ctx, "kernel.create.image")
				endStep(nil)
				end("")
			}
			if d := time.Since(began); d > testutil.Slow(3*time.Second) {
				t.Fatalf("4000 spans took %v with the collector down", d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			began = time.Now()
			_ = p.Shutdown(ctx)
			if d := time.Since(began); d > testutil.Slow(2*time.Second) {
				t.Fatalf("Shutdown took %v past its 1-s deadline", d)
			}
		})
	}
}

package etcdconfig

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

func TestLoadAndRegister_Integration(t *testing.T) {
	e := testutil.StartEtcd(t)
	ctx := context.Background()
	c, err := Dial(ctx, Options{Endpoints: []string{"http://" + e.Addr}, Namespace: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Missing config/redis is an error naming the key.
	if _, err := c.Load(ctx); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "/sorna/t1/config/redis/addr") {
		t.Fatalf("missing redis: %v", err)
	}
	e.Put(t, "/sorna/t1/config/redis/addr", "127.0.0.1:6379")
	e.Put(t, "/sorna/t1/config/agent/api/pull-timeout", "30")
	e.Put(t, "/sorna/t1/config/container/kernel-uid", "1000")
	e.Put(t, "/sorna/t1/volumes/_mount", "/mnt")
	e.Put(t, "/sorna/t1/config/network/subnet/agent", "10.0.0.0/8")
	g, err := c.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.Redis.Addr != "127.0.0.1:6379" || g.PullTimeout != 30*time.Second || *g.KernelUID != 1000 || g.Volumes["_mount"] != "/mnt" || g.SubnetAgent != "10.0.0.0/8" {
		t.Fatalf("loaded %+v", g)
	}
	e.Put(t, "/sorna/t1/config/container/kernel-gid", "nobody")
	if _, err := c.Load(ctx); err == nil || !strings.Contains(err.Error(), "config/container/kernel-gid") {
		t.Fatalf("bad gid: %v", err)
	}
	if err := c.Register(ctx, "i-x", "running", "127.0.0.1", 6009); err != nil {
		t.Fatal(err)
	}
	if v := e.Get(t, "/sorna/t1/nodes/agents/i-x"); v != "running" {
		t.Fatalf("registered %q", v)
	}
	if v := e.Get(t, "/sorna/t1/nodes/agents/i-x/watcher_port"); v != "6009" {
		t.Fatalf("watcher_port %q", v)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.WaitForManager(wctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Fatal("no manager, yet WaitForManager returned")
	}
	e.Put(t, "/sorna/t1/nodes/manager/i-m", "up")
	if err := c.WaitForManager(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(ctx, Options{Endpoints: []string{"http://127.0.0.1:1"}, Namespace: "x", Timeout: time.Second}); err == nil {
		t.Fatal("dial to nothing succeeded")
	}
}

package etcdconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

func TestLoadAndRegister_Integration(t *testing.T) {
	e := testutil.StartEtcd(t)
	ctx := context.Background()
	c, err := Dial(ctx, Options{Endpoints: []string{e.Addr}, Namespace: "t1"})
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
	if g.Redis.Addr != "127.0.0.1:6379" || g.API["pull-timeout"] != "30" || *g.KernelUID != 1000 || g.Volumes["_mount"] != "/mnt" || g.SubnetAgent != "10.0.0.0/8" {
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

// etcd over TLS with authentication and a 2-s token TTL: the agent's
// client keeps working after the token it first got has expired.
func TestTLSAndTokenExpiry_Integration(t *testing.T) {
	e := testutil.StartEtcdWith(t, testutil.EtcdOptions{TLS: true, Args: []string{"--auth-token", "simple", "--auth-token-ttl", "2"}})
	e.EnableAuth(t, "agent", "s3cret")
	e.Put(t, "/sorna/t2/config/redis/addr", "127.0.0.1:6379")
	pem, err := os.ReadFile(e.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	ctx := context.Background()
	c, err := Dial(ctx, Options{Endpoints: []string{e.Addr}, Namespace: "t2", User: "agent", Password: "s3cret", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, TokenRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, ok, err := c.Get(ctx, "config/redis/addr"); err != nil || !ok || v != "127.0.0.1:6379" {
		t.Fatalf("first read: %q %v %v", v, ok, err)
	}
	// TokenRefresh is an hour here, so only the server's "invalid token"
	// answer can make the client renew it.
	time.Sleep(4 * time.Second)
	if v, _, err := c.Get(ctx, "config/redis/addr"); err != nil || v != "127.0.0.1:6379" {
		t.Fatalf("read after the token TTL: %q %v", v, err)
	}
	if err := c.Put(ctx, "nodes/agents/i-tls", "running"); err != nil {
		t.Fatalf("write after the token TTL: %v", err)
	}
	// The proactive path: a refresh age shorter than the TTL renews before
	// the server would refuse.
	c2, err := Dial(ctx, Options{Endpoints: []string{e.Addr}, Namespace: "t2", User: "agent", Password: "s3cret", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, TokenRefresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for i := 0; i < 3; i++ {
		time.Sleep(1500 * time.Millisecond)
		if _, _, err := c2.Get(ctx, "config/redis/addr"); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	// A wrong password is an error naming the user; plain HTTP to a TLS
	// port fails too.
	if _, err := Dial(ctx, Options{Endpoints: []string{e.Addr}, Namespace: "t2", User: "agent", Password: "nope", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}); err == nil || !strings.Contains(err.Error(), `"agent"`) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := Dial(ctx, Options{Endpoints: []string{e.Addr}, Namespace: "t2", Timeout: 2 * time.Second}); err == nil {
		t.Fatal("plain HTTP to a TLS etcd succeeded")
	}
}

func TestRedisConfigFromEtcd_Integration(t *testing.T) {
	e := testutil.StartEtcd(t)
	ctx := context.Background()
	c, err := Dial(ctx, Options{Endpoints: []string{e.Addr}, Namespace: "t3"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e.Put(t, "/sorna/t3/config/redis/sentinel", "127.0.0.1:26379,127.0.0.1:26380")
	e.Put(t, "/sorna/t3/config/redis/service_name", "mymaster")
	e.Put(t, "/sorna/t3/config/redis/password", "pw")
	e.Put(t, "/sorna/t3/config/redis/use_tls", "true")
	e.Put(t, "/sorna/t3/config/redis/override_configs/stream/addr", "127.0.0.1:7000")
	g, err := c.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := g.Redis
	if len(r.Sentinel) != 2 || r.Sentinel[1] != "127.0.0.1:26380" || r.ServiceName != "mymaster" || r.Password != "pw" || !r.TLS {
		t.Fatalf("redis config %+v", r)
	}
	if s := r.For("stream"); s.Addr != "127.0.0.1:7000" || len(s.Sentinel) != 0 {
		t.Fatalf("stream override %+v", s)
	}
	if s := r.For("statistics"); s.ServiceName != "mymaster" {
		t.Fatalf("statistics falls back to the default: %+v", s)
	}
	for _, bad := range []struct{ key, val, want string }{
		{"/sorna/t3/config/redis/service_name", "", "service_name is required"},
		{"/sorna/t3/config/redis/use_tls", "maybe", "use_tls"},
		{"/sorna/t3/config/redis/override_configs/stream/addr", "nohost", "override_configs/stream/addr"},
	} {
		t.Run(bad.key, func(t *testing.T) {
			old := e.Get(t, bad.key)
			e.Put(t, bad.key, bad.val)
			defer e.Put(t, bad.key, old)
			if _, err := c.Load(ctx); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Fatalf("got %v, want %q", err, bad.want)
			}
		})
	}
}

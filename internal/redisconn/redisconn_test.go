package redisconn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/redis/go-redis/v9"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" is valid
	}{
		{"plain", Config{Target: Target{Addr: "127.0.0.1:6379"}}, ""},
		{"sentinel", Config{Target: Target{Sentinel: []string{"10.0.0.1:26379"}, ServiceName: "m"}}, ""},
		{"nothing", Config{}, "config/redis/addr (or sentinel and service_name) is required"},
		{"bad addr", Config{Target: Target{Addr: "redis"}}, "config/redis/addr: \"redis\" is not host:port"},
		{"sentinel without name", Config{Target: Target{Sentinel: []string{"10.0.0.1:26379"}}}, "config/redis/service_name is required"},
		{"bad sentinel", Config{Target: Target{Sentinel: []string{"x"}, ServiceName: "m"}}, "config/redis/sentinel[0]"},
		{"bad override", Config{Target: Target{Addr: "h:1"}, Overrides: map[string]Target{"stream": {Addr: "nope"}}}, "override_configs/stream/addr"},
		{"other component's override ignored", Config{Target: Target{Addr: "h:1"}, Overrides: map[string]Target{"rate_limit": {}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
	c := Config{Target: Target{Addr: "h:1"}, Overrides: map[string]Target{RoleStream: {Addr: "s:2"}}}
	if c.For(RoleStream).Addr != "s:2" || c.For(RoleLive).Addr != "h:1" {
		t.Fatal("For does not pick the override")
	}
}

// A Redis that only speaks TLS and only knows an ACL user: the client
// connects with use_tls, the username and the password, and verifies the
// server's certificate unless tls_skip_verify is set.
func TestTLSAndACLUser_Integration(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		testutil.Missing(t, "redis-server (apt-get install redis-server)")
	}
	dir := t.TempDir()
	ca, cert, key := testutil.WriteTestCerts(t, dir)
	port := testutil.FreePort(t)
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--user", "default", "off", "--user", "agent", "on", ">s3cret", "~*", "&*", "+@all")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Logf("redis log:\n%s", b)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ping := func(tg Target) error {
		c, err := New(Config{Target: tg})
		if err != nil {
			return err
		}
		cl := c.Client(RoleStream, 4, nil)
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return cl.Ping(ctx).Err()
	}
	testutil.Eventually(t, 15*time.Second, "TLS redis answers", func() bool {
		return ping(Target{Addr: addr, Username: "agent", Password: "s3cret", TLS: true, TLSSkipVerify: true}) == nil
	})
	for _, tc := range []struct {
		name string
		tg   Target
	}{
		{"wrong password", Target{Addr: addr, Username: "agent", Password: "nope", TLS: true, TLSSkipVerify: true}},
		{"default user is off", Target{Addr: addr, Password: "s3cret", TLS: true, TLSSkipVerify: true}},
		{"unknown CA is refused", Target{Addr: addr, Username: "agent", Password: "s3cret", TLS: true}},
		{"plain TCP to a TLS port", Target{Addr: addr, Username: "agent", Password: "s3cret"}},
	} {
		if err := ping(tc.tg); err == nil {
			t.Errorf("%s: connected", tc.name)
		}
	}
}

// go-redis' own messages (here: a pool that cannot dial) become DEBUG
// records of the agent's logger, not unformatted stderr lines.
func TestClientLogsThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	SetLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := New(Config{Target: Target{Addr: addr}})
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Client(RoleLive, 2, nil)
	defer cl.Close()
	if err := cl.Ping(context.Background()).Err(); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	var rec map[string]any
	if err := json.Unmarshal(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0], &rec); err != nil {
		t.Fatalf("no JSON record logged (%q): %v", buf.String(), err)
	}
	if rec["level"] != "DEBUG" || rec["component"] != "redis-client" || !strings.Contains(rec["msg"].(string), "failed to dial") {
		t.Fatalf("record %v", rec)
	}
}

// The agents of one process share one client per role and database; it
// closes when its last user releases it (twice is once).
func TestSharedClients(t *testing.T) {
	c, err := New(Config{Target: Target{Addr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	a, releaseA := c.Shared(RoleLive, 2)
	b, releaseB := c.Shared(RoleLive, 2)
	other, releaseOther := c.Shared(RoleLive, 0)
	defer releaseOther()
	if a != b {
		t.Fatal("two users of live/2 got two clients")
	}
	if other == a {
		t.Fatal("live/0 and live/2 share a client")
	}
	closed := func(cl *redis.Client) bool {
		return errors.Is(cl.Ping(context.Background()).Err(), redis.ErrClosed)
	}
	releaseA()
	releaseA() // a second release by the same user changes nothing
	if closed(b) {
		t.Fatal("the client closed while a user still holds it")
	}
	releaseB()
	if !closed(b) {
		t.Fatal("the client is open after its last user released it")
	}
	// A later user gets a new client.
	d, releaseD := c.Shared(RoleLive, 2)
	defer releaseD()
	if d == a || closed(d) {
		t.Fatal("a user after the last release got the closed client")
	}
}

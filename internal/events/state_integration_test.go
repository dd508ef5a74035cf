package events

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/redisconn"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

type nopSink struct{}

func (nopSink) Publish(context.Context, event.Event) {}

// The plain keys the manager parses: presence (integer seconds of Redis
// TIME, refreshed at once on demand, removed when the kernel ends),
// kernel.{id}.commit while a commit runs, and the service-discovery hash
// with JSON values.
func TestStateKeys_Integration(t *testing.T) {
	r := testutil.StartRedis(t)
	conn, err := redisconn.New(redisconn.Config{Target: redisconn.Target{Addr: r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	running := []string{"k1", "k2"}
	committing := []string{"k1"}
	reg := time.Now().Add(-time.Minute)
	s := StartState(StateOptions{
		AgentID: "i-x", Redis: conn, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: time.Hour,
		Kernels:        func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), running...) },
		ContainerCount: func() int { return 2 },
		Committing:     func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), committing...) },
		Discovery:      &Discovery{ID: "8d4f2c1e-0000-4000-8000-000000000001", DisplayName: "agent-i-x", Version: "1.0", Address: "10.0.0.1:6003", Port: 6003, Registered: reg},
		Producer:       nopSink{},
	})
	defer s.Close()
	ctx := context.Background()
	live := redis.NewClient(&redis.Options{Addr: r.Addr, DB: DBLive})
	defer live.Close()
	stat := redis.NewClient(&redis.Options{Addr: r.Addr, DB: DBStat})
	defer stat.Close()

	testutil.Eventually(t, 5*time.Second, "presence keys", func() bool {
		return live.Exists(ctx, PresenceKey("k1"), PresenceKey("k2")).Val() == 2
	})
	h := live.HGetAll(ctx, PresenceKey("k1")).Val()
	last, err := strconv.ParseInt(h["last_presence"], 10, 64) // the manager's int()
	now := live.Time(ctx).Val().Unix()
	if err != nil || h["presence"] != "1" || now-last > 5 || last > now {
		t.Fatalf("presence hash %v (now %d): %v", h, now, err)
	}
	if ttl := live.TTL(ctx, PresenceKey("k1")).Val(); ttl <= 0 || ttl > presenceTTL {
		t.Fatalf("presence TTL %s", ttl)
	}
	// k3 starts: RefreshPresence writes it at once, not a minute later;
	// k2 ended: its key goes with that pass.
	mu.Lock()
	running = []string{"k1", "k3"}
	mu.Unlock()
	s.RefreshPresence()
	testutil.Eventually(t, 5*time.Second, "presence follows the running kernels", func() bool {
		return live.Exists(ctx, PresenceKey("k3")).Val() == 1 && live.Exists(ctx, PresenceKey("k2")).Val() == 0
	})
	if err := s.ForgetKernel(ctx, "k1"); err != nil || live.Exists(ctx, PresenceKey("k1")).Val() != 0 {
		t.Fatalf("ForgetKernel: %v", err)
	}

	testutil.Eventually(t, 5*time.Second, "commit status", func() bool {
		return stat.Get(ctx, "kernel.k1.commit").Val() == "ongoing"
	})
	if ttl := stat.TTL(ctx, "kernel.k1.commit").Val(); ttl <= 0 || ttl > commitStatusTTL {
		t.Fatalf("commit status TTL %s", ttl)
	}

	d := stat.HGetAll(ctx, "service_discovery.agent.8d4f2c1e-0000-4000-8000-000000000001").Val()
	meta := map[string]any{}
	for k, v := range d {
		var x any
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			t.Fatalf("discovery field %s is not JSON: %q", k, v)
		}
		meta[k] = x
	}
	ep, _ := meta["endpoint"].(map[string]any)
	hs, _ := meta["health_status"].(map[string]any)
	if meta["id"] != "8d4f2c1e-0000-4000-8000-000000000001" || meta["service_group"] != "agent" || meta["display_name"] != "agent-i-x" ||
		ep["address"] != "10.0.0.1:6003" || ep["port"] != float64(6003) || ep["protocol"] != "http" ||
		hs["registration_time"] != float64(reg.UnixNano())/1e9 || hs["last_heartbeat"].(float64) < hs["registration_time"].(float64) {
		t.Fatalf("discovery %v", meta)
	}
	if _, ok := meta["labels"].(map[string]any); !ok {
		t.Fatalf("discovery labels %v", meta["labels"])
	}
	if ttl := stat.TTL(ctx, "service_discovery.agent.8d4f2c1e-0000-4000-8000-000000000001").Val(); ttl <= 0 || ttl > discoveryTTL {
		t.Fatalf("discovery TTL %s", ttl)
	}
}

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// streamNames lists the event names on the stream since a time, read the
// way a manager behind the same sentinel would.
func streamNames(t *testing.T, rdb *redis.Client, since time.Time) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	msgs, err := rdb.XRange(ctx, "events", fmt.Sprintf("%d-0", since.UnixMilli()), "+").Result()
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range msgs {
		name := fmt.Sprint(m.Values["name"])
		if p, ok := m.Values["payload"].(string); ok && strings.HasPrefix(name, "kernel_") {
			var pl map[string]any
			if json.Unmarshal([]byte(p), &pl) == nil {
				name += ":" + fmt.Sprint(pl["kernel_id"])
			}
		}
		out = append(out, name)
	}
	return out
}

func contains(names []string, want string) bool {
	for _, n := range names {
		if n == want {
			return true
		}
	}
	return false
}

// The agent finds Redis through Sentinel (config/redis/sentinel and
// service_name) and follows a failover: after the master is killed and
// the replica promoted, heartbeats and lifecycle events keep arriving on
// the new master's stream.
func TestRedisSentinelFailover_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	sent := testutil.StartSentinel(t)
	s := newStack(t, "")
	ns := strings.Split(readNS(t, s.cfg), "\n")[0]
	// With sentinel set, addr is ignored (as upstream): point it at
	// nothing to prove it.
	s.etcd.Put(t, "/sorna/"+ns+"/config/redis/addr", "127.0.0.1:1")
	s.etcd.Put(t, "/sorna/"+ns+"/config/redis/sentinel", sent.Addr)
	s.etcd.Put(t, "/sorna/"+ns+"/config/redis/service_name", sent.MasterName)
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sent.MasterName, SentinelAddrs: []string{sent.Addr}, DB: 4})
	defer fc.Close()
	t0 := time.Now()
	s.start()
	testutil.Eventually(t, 20*time.Second, "heartbeats on the sentinel's master", func() bool {
		n := 0
		for _, name := range streamNames(t, fc, t0) {
			if name == "agent_heartbeat" {
				n++
			}
		}
		return n >= 2
	})
	before := sent.CurrentMaster(t)
	if before != sent.Master.Addr {
		t.Fatalf("sentinel master %s, want %s", before, sent.Master.Addr)
	}
	sent.Master.Stop()
	testutil.Eventually(t, 45*time.Second, "sentinel promotes the replica", func() bool {
		return sent.CurrentMaster(t) == sent.Replica.Addr
	})
	failedOver := time.Now()
	testutil.Eventually(t, 30*time.Second, "heartbeats on the new master", func() bool {
		n := 0
		for _, name := range streamNames(t, fc, failedOver) {
			if name == "agent_heartbeat" {
				n++
			}
		}
		return n >= 2
	})
	kid := s.createKernel(img)
	s.ctl("destroy", kid)
	testutil.Eventually(t, 30*time.Second, "lifecycle events on the new master", func() bool {
		names := streamNames(t, fc, failedOver)
		return contains(names, "kernel_started:"+kid) && contains(names, "kernel_terminated:"+kid)
	})
	// And the agent still answers.
	s.ctl("ping")
}

// A Sentinel nobody answers: the agent starts, keeps serving RPC, keeps
// the events in its outbox, and says which target it cannot reach.
func TestUnreachableSentinel_Integration(t *testing.T) {
	s := newStack(t, "")
	ns := strings.Split(readNS(t, s.cfg), "\n")[0]
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	s.etcd.Put(t, "/sorna/"+ns+"/config/redis/sentinel", dead)
	s.etcd.Put(t, "/sorna/"+ns+"/config/redis/service_name", "nomaster")
	s.start()
	testutil.Eventually(t, 30*time.Second, "a warning naming the sentinel", func() bool {
		b, _ := os.ReadFile(s.logf.Name())
		return strings.Contains(string(b), "sentinel "+dead+" master nomaster")
	})
	s.ctl("ping")
	t0 := time.Now()
	// And a malformed sentinel list stops start-up, naming the key.
	s.stop()
	// It was 22 s before the Redis writers closed within a grace period
	// (go-redis keeps re-dialling an unreachable Sentinel).
	if d := time.Since(t0); d > testutil.Slow(10*time.Second) {
		t.Fatalf("SIGTERM with Redis unreachable took %s", d)
	}
	s.etcd.Put(t, "/sorna/"+ns+"/config/redis/sentinel", "no-port")
	out, err := exec.Command(s.bin, "start-server", "-f", s.cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "config/redis/sentinel[0]") {
		t.Fatalf("malformed sentinel: %v\n%s", err, out)
	}
}

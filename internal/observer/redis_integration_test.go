package observer

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// Databases as upstream numbers them (common/defs: REDIS_STATISTICS_DB,
// REDIS_LIVE_DB).
const (
	dbStat = 0
	dbLive = 2
)

func pyPeer(t *testing.T, args ...string) string {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import redis").Run(); err != nil {
		testutil.Missing(t, "python3-redis (apt-get install python3-redis)")
	}
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_schedule.py")
	out, err := exec.Command(py, append([]string{script}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("manager peer %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The manager's stale-kernel sweeps, played by Python with the manager's
// own keys and encodings, against the reaper reading a real redis-server:
// only the kernel the latest sweep skipped for more than 600 s is
// destroyed; the one exactly 600 s behind, the one never swept, the one
// without the agent's presence fields and every kernel of an agent the
// manager never stamped are kept.
func TestOrphanReaperRedis_Integration(t *testing.T) {
	srv := testutil.StartRedis(t)
	live := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: dbLive})
	t.Cleanup(func() { live.Close() })
	ctx := context.Background()
	const (
		orphan   = kid1
		boundary = kid2
		never    = kid3
		noFields = "44444444-4444-4444-8444-444444444444"
		current  = "55555555-5555-4555-8555-555555555555"
	)
	// The agent's own presence writes (update_kernel_presence_batch).
	for _, id := range []string{orphan, boundary, never, current} {
		if err := live.HSet(ctx, PresenceKey(id), "presence", "1", "last_presence", strconv.FormatInt(time.Now().Unix(), 10)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ag := &fakeAgent{kernels: []Kernel{{orphan, "s1"}, {boundary, "s2"}, {never, "s3"}, {noFields, "s4"}, {current, "s5"}}}
	r := &OrphanReaper{o: OrphanOptions{AgentID: "i-node", Agent: ag, Store: RedisPresence{Client: live}, Log: testLog(t)}}

	// Sweeps of another agent only: this agent was never stamped.
	pyPeer(t, "sweep", srv.Addr, "2", "i-other", orphan+"@-700", noFields+"@-700")
	if err := r.Tick(ctx); err != nil || len(ag.Calls()) != 0 {
		t.Fatalf("without agent:last_check: err %v, destroys %+v", err, ag.Calls())
	}

	// A sweep 700 s ago last saw the orphan, one 600 s ago the boundary
	// kernel, and the latest (now) the current kernel and this agent; all
	// three are played from one reading of the Redis clock, so the
	// distances are exact.
	now := pyPeer(t, "sweep", srv.Addr, "2", "i-node", orphan+"@-700", boundary+"@-600", current)
	if v, err := live.Get(ctx, AgentLastCheckKey("i-node")).Result(); err != nil || v != now {
		t.Fatalf("agent:last_check = %q %v, want %s", v, err, now)
	}
	if ttl := live.TTL(ctx, AgentLastCheckKey("i-node")).Val(); ttl <= 0 || ttl > 1200*time.Second {
		t.Fatalf("agent:last_check TTL %s", ttl)
	}
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	calls := ag.Calls()
	if len(calls) != 1 || calls[0] != (destroyCall{orphan, "s1", "not-found-in-manager", true}) {
		t.Fatalf("destroys %+v, want only %s", calls, orphan)
	}
	// The reaper only reads: the manager's stamps are as they were.
	if v := live.HGet(ctx, PresenceKey(boundary), "last_check").Val(); v == "" {
		t.Fatal("boundary kernel's last_check gone")
	}
}

// A Redis outage fails the pass with an error naming the key, within the
// call deadline; the pass after Redis is back works.
func TestOrphanReaperRedisOutage_Integration(t *testing.T) {
	srv := testutil.StartRedis(t)
	live := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: dbLive, MaxRetries: -1})
	t.Cleanup(func() { live.Close() })
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	r := &OrphanReaper{o: OrphanOptions{AgentID: "i-node", Agent: ag, Store: RedisPresence{Client: live, Timeout: 2 * time.Second}, Log: testLog(t)}}
	srv.Stop()
	start := time.Now()
	err := r.Tick(context.Background())
	if err == nil || !strings.Contains(err.Error(), "agent:last_check:i-node") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the failed pass took %s", d)
	}
	srv.Start()
	if err := live.HSet(context.Background(), PresenceKey(kid1), "presence", "1").Err(); err != nil {
		t.Fatal(err)
	}
	pyPeer(t, "sweep", srv.Addr, "2", "i-node", kid1+"@-601")
	if err := r.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(ag.Calls()) != 1 {
		t.Fatalf("destroys %+v", ag.Calls())
	}
}

// The abuse_report hash as the manager's API reads it (HGET, UTF-8).
func TestAbuseReportRedis_Integration(t *testing.T) {
	srv := testutil.StartRedis(t)
	stat := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: dbStat})
	t.Cleanup(func() { stat.Close() })
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "report.a.json"), report(kid1, ""))
	writeFile(t, filepath.Join(dir, "report.b.json"), report(kid2, ""))
	managerSees := func() map[string]*string {
		var m map[string]*string
		if err := json.Unmarshal([]byte(pyPeer(t, "abuse", srv.Addr, "0", kid1, kid2, kid3)), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	str := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}

	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	detect := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: false, Agent: ag, Store: RedisAbuseReport{Client: stat}, Log: testLog(t)}}
	if err := detect.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := managerSees(); str(m[kid1]) != "detected" || str(m[kid2]) != "detected" || m[kid3] != nil {
		t.Fatalf("detect only: manager sees %s %s %s", str(m[kid1]), str(m[kid2]), str(m[kid3]))
	}

	enforce := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: true, Agent: ag, Store: RedisAbuseReport{Client: stat}, Log: testLog(t)}}
	if err := enforce.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	// kid2 is not registered here: no longer listed, its report kept.
	if m := managerSees(); str(m[kid1]) != "cleaning" || m[kid2] != nil {
		t.Fatalf("terminate: manager sees %s %s", str(m[kid1]), str(m[kid2]))
	}
	if calls := ag.Calls(); len(calls) != 1 || calls[0] != (destroyCall{kid1, "s1", "anomaly-detected", false}) {
		t.Fatalf("destroys %+v", calls)
	}
	if err := enforce.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := stat.Exists(context.Background(), AbuseReportHash).Val(); n != 0 {
		t.Fatalf("abuse_report still there after the kernel went: %v", stat.HGetAll(context.Background(), AbuseReportHash).Val())
	}
}

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

type stack struct {
	bin    string
	t      testing.TB
	redis  *testutil.Redis
	etcd   *testutil.Etcd
	cfg    string
	id     string
	rpc    string
	root   string
	cmd    *exec.Cmd
	logf   *os.File
	rdb    *redis.Client
	vfroot string
	env    []string
	ns     string // etcd namespace
}

// newStack starts redis-server and etcd, seeds etcd as a manager would,
// and writes an agent config pointing at them.
func newStack(t testing.TB, extraAgent string) *stack {
	return newStackWith(t, extraAgent, stackOpts{})
}

// stackOpts let several agents share one control plane (Redis, etcd and
// its namespace), each with its own port range and environment.
type stackOpts struct {
	redis     *testutil.Redis
	etcd      *testutil.Etcd
	ns        string
	portRange [2]int
	env       []string
	debug     string  // extra [debug] keys
	tail      string  // appended to the file ([[agents]] entries)
	resource  string  // extra [resource] keys
	heartbeat float64 // [debug] heartbeat-interval in seconds (0: 1 s)
	sync      float64 // [agent.sync-container-lifecycles] interval (0: 2 s)
}

func newStackWith(t testing.TB, extraAgent string, o stackOpts) *stack {
	testutil.RequireDocker(t)
	testutil.RequireRoot(t)
	if o.redis == nil {
		o.redis = testutil.StartRedis(t)
	}
	if o.etcd == nil {
		o.etcd = testutil.StartEtcd(t)
	}
	if o.portRange == [2]int{} {
		o.portRange = [2]int{28000, 28199} // below the ephemeral range (32768-60999)
	}
	s := &stack{bin: testutil.AgentBinary(t), t: t, redis: o.redis, etcd: o.etcd, root: t.TempDir(), id: "i-ev-" + uuid.NewString()[:8], env: o.env}
	ns := o.ns
	if ns == "" {
		ns = "ns" + uuid.NewString()[:6]
		s.etcd.Put(t, "/sorna/"+ns+"/config/redis/addr", s.redis.Addr)
		s.etcd.Put(t, "/sorna/"+ns+"/nodes/manager/i-mgr", "up")
	}
	s.ns = ns
	s.rpc = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	s.vfroot = filepath.Join(s.root, "vfroot")
	_ = os.MkdirAll(s.vfroot, 0o755)
	s.cfg = filepath.Join(s.root, "agent.toml")
	hb := o.heartbeat
	if hb == 0 {
		hb = 1
	}
	syncIvl := o.sync
	if syncIvl == 0 {
		syncIvl = 2
	}
	doc := fmt.Sprintf(`[etcd]
namespace = %q
addr = %q
[agent]
backend = "docker"
id = %q
rpc-listen-addr = %q
internal-addr = "127.0.0.1:0"
var-base-path = %q
mount-path = %q
%s
[agent.sync-container-lifecycles]
interval = %g
[container]
port-range = [%d, %d]
port-reuse-cooldown-sec = 0
bind-host = "127.0.0.1"
scratch-root = %q
[resource]
reserved-cpu = 0
reserved-mem = "64M"
%s
[debug]
heartbeat-interval = %g
%s
%s`, ns, s.etcd.Addr, s.id, s.rpc, filepath.Join(s.root, "var"), s.vfroot, extraAgent, syncIvl, o.portRange[0], o.portRange[1], filepath.Join(s.root, "scratch"), o.resource, hb, o.debug, o.tail)
	if err := os.WriteFile(s.cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 4})
	t.Cleanup(func() {
		s.kill()
		s.rdb.Close()
		testutil.RemoveContainers(t, map[string]string{"ai.backend.owner": s.id})
		if t.Failed() && s.logf != nil {
			b, _ := os.ReadFile(s.logf.Name())
			t.Logf("agent log:\n%s", b)
		}
	})
	// Consumer group first, as the manager has one before agents start.
	if err := s.rdb.XGroupCreateMkStream(context.Background(), "events", "manager", "$").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		t.Fatal(err)
	}
	return s
}

func (s *stack) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "start-server", "-f", s.cfg)
	s.cmd.Env = append(os.Environ(), s.env...)
	if s.logf == nil {
		s.logf, _ = os.Create(filepath.Join(s.root, "agent.log"))
	}
	s.cmd.Stdout, s.cmd.Stderr = s.logf, s.logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	testutil.Eventually(s.t, 60*time.Second, "agent answers RPC", func() bool {
		return exec.Command(s.bin, "ctl", "--addr", s.rpc, "ping").Run() == nil
	})
}

func (s *stack) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// stop sends SIGTERM and waits up to 30 s (then SIGKILLs, and the test
// sees the time it took).
func (s *stack) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	s.cmd = nil
}

func (s *stack) ctl(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(s.bin, append([]string{"ctl", "--addr", s.rpc}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (s *stack) createKernel(img string) string {
	s.t.Helper()
	var res []map[string]any
	out := s.ctl("--json", "create", "--image", img, "--cpu", "1", "--mem", "64m", "--shm", "8m")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		s.t.Fatalf("create: %v %s", err, out)
	}
	return res[0]["id"].(string)
}

type event struct {
	Name    string
	Source  string
	Payload map[string]any
	At      time.Time // from the stream entry id (Redis time, ms)
}

// readEvents consumes the stream as the manager does (consumer group
// "manager", JSON payload) until stop says enough; it fails the test when
// the timeout passes first.
func (s *stack) readEvents(timeout time.Duration, stop func([]event) bool) []event {
	s.t.Helper()
	var evs []event
	deadline := time.Now().Add(timeout)
	ctx := context.Background()
	for time.Now().Before(deadline) {
		res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "manager", Consumer: "m1", Streams: []string{"events", ">"}, Count: 100, Block: 500 * time.Millisecond}).Result()
		if err != nil && err != redis.Nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, st := range res {
			for _, m := range st.Messages {
				e := event{Name: fmt.Sprint(m.Values["name"]), Source: fmt.Sprint(m.Values["source"])}
				if ms, err := strconv.ParseInt(strings.SplitN(m.ID, "-", 2)[0], 10, 64); err == nil {
					e.At = time.UnixMilli(ms)
				}
				if p, ok := m.Values["payload"].(string); ok {
					if err := json.Unmarshal([]byte(p), &e.Payload); err != nil {
						s.t.Fatalf("payload of %s is not JSON: %v", e.Name, err)
					}
				}
				evs = append(evs, e)
				_ = s.rdb.XAck(ctx, "events", "manager", m.ID)
			}
		}
		if stop(evs) {
			return evs
		}
	}
	names := make([]string, 0, len(evs))
	for _, e := range evs {
		names = append(names, e.Name)
	}
	s.t.Fatalf("timed out after %s waiting for events; saw %v", timeout, names)
	return nil
}

// broadcasts subscribes to events_all and returns a function that waits
// for the next broadcast of the given name and returns its payload; it
// fails the test when none arrives in time.
func (s *stack) broadcasts() func(name string, timeout time.Duration) map[string]any {
	s.t.Helper()
	sub := s.rdb.Subscribe(context.Background(), "events_all")
	s.t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(context.Background()); err != nil { // the subscription confirmation
		s.t.Fatalf("subscribe events_all: %v", err)
	}
	return func(name string, timeout time.Duration) map[string]any {
		s.t.Helper()
		deadline := time.Now().Add(timeout)
		for time.Now().Before(deadline) {
			msg, err := sub.ReceiveTimeout(context.Background(), time.Until(deadline))
			if err != nil {
				break
			}
			m, ok := msg.(*redis.Message)
			if !ok {
				continue
			}
			var b struct{ Name, Source, Payload string }
			if err := json.Unmarshal([]byte(m.Payload), &b); err != nil {
				s.t.Fatalf("broadcast is not JSON: %s", m.Payload)
			}
			if b.Name != name {
				continue
			}
			var p map[string]any
			if err := json.Unmarshal([]byte(b.Payload), &p); err != nil {
				s.t.Fatalf("payload of broadcast %s is not JSON: %s", name, b.Payload)
			}
			return p
		}
		s.t.Fatalf("no %s broadcast within %s", name, timeout)
		return nil
	}
}

func kernelEvents(evs []event, kid string) []string {
	var out []string
	for _, e := range evs {
		if e.Payload["kernel_id"] == kid {
			out = append(out, e.Name)
		}
	}
	return out
}

func countName(evs []event, name string) int {
	n := 0
	for _, e := range evs {
		if e.Name == name {
			n++
		}
	}
	return n
}

func TestEventsHeartbeatAndState_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	s := newStack(t, "")
	sub := s.rdb.Subscribe(context.Background(), "events_all")
	defer sub.Close()
	s.start()
	if v := s.etcd.Get(t, "/sorna/"+strings.Split(readNS(t, s.cfg), "\n")[0]+"/nodes/agents/"+s.id); v != "running" {
		t.Fatalf("etcd nodes/agents/%s = %q", s.id, v)
	}
	kid := s.createKernel(img)
	s.ctl("destroy", kid)
	evs := s.readEvents(30*time.Second, func(evs []event) bool {
		return countName(evs, "kernel_terminated") >= 1 && countName(evs, "agent_heartbeat") >= 3 && countName(evs, "do_sync_kernel_logs") >= 1
	})
	got := strings.Join(kernelEvents(evs, kid), ",")
	if !strings.HasPrefix(got, "kernel_preparing,kernel_creating,kernel_started") || !strings.Contains(got, "kernel_terminated") {
		t.Fatalf("kernel events in order: %s", got)
	}
	for _, e := range evs {
		if e.Source != s.id {
			t.Fatalf("event %s from %q", e.Name, e.Source)
		}
		switch e.Name {
		case "kernel_started":
			ci, _ := e.Payload["creation_info"].(map[string]any)
			if ci["container_id"] == nil || ci["repl_in_port"] == nil {
				t.Fatalf("creation_info: %v", e.Payload)
			}
		case "kernel_terminated":
			if e.Payload["reason"] != "user-requested" || e.Payload["session_id"] == nil {
				t.Fatalf("kernel_terminated: %v", e.Payload)
			}
		case "agent_heartbeat":
			info, _ := e.Payload["agent_info"].(map[string]any)
			if info["addr"] != "tcp://"+s.rpc || info["available_resource_slots"] == nil || info["slot_key_and_units"] == nil || info["version"] == nil || info["architecture"] == nil {
				t.Fatalf("agent_info: %v", info)
			}
		}
	}
	if countName(evs, "agent_started") != 1 {
		t.Fatalf("agent_started seen %d times", countName(evs, "agent_started"))
	}
	// Broadcast copy of the lifecycle events.
	// The subscription's confirmation may come first: skip it, not the
	// check (it used to end the check silently).
	var m *redis.Message
	for deadline := time.Now().Add(5 * time.Second); m == nil; {
		msg, err := sub.ReceiveTimeout(context.Background(), time.Until(deadline))
		if err != nil {
			t.Fatalf("no broadcast: %v", err)
		}
		switch v := msg.(type) {
		case *redis.Message:
			m = v
		case *redis.Subscription:
		default:
			t.Fatalf("broadcast: got %T", msg)
		}
	}
	var b map[string]any
	if json.Unmarshal([]byte(m.Payload), &b) != nil || b["source"] != s.id || b["payload"] == nil {
		t.Fatalf("broadcast message: %s", m.Payload)
	}
	// Heartbeats every heartbeat-interval (1 s here).
	var beats []time.Time
	for _, e := range evs {
		if e.Name == "agent_heartbeat" {
			beats = append(beats, e.At)
		}
	}
	// A beat that Redis does not take within half an interval is given up
	// (the next one carries the same news), so one gap of two intervals
	// plus that half is allowed on a loaded machine; a second is not.
	long := 0
	for i := 1; i < len(beats); i++ {
		gap := beats[i].Sub(beats[i-1])
		if gap > testutil.Slow(2500*time.Millisecond) && gap <= testutil.Slow(4*time.Second) {
			long++
		}
		if gap < 700*time.Millisecond || gap > testutil.Slow(4*time.Second) || long > 1 {
			t.Fatalf("heartbeat gap %s (beat %d of %d, %d long gaps), want about 1 s", gap, i, len(beats), long)
		}
	}
	// Plain keys the manager reads.
	ctx := context.Background()
	stat := redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 0})
	defer stat.Close()
	img3 := redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 3})
	defer img3.Close()
	clog := redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 6})
	defer clog.Close()
	testutil.Eventually(t, 10*time.Second, "installed_image key", func() bool {
		v, _ := img3.Get(ctx, "installed_image:"+s.id).Result()
		return strings.Contains(v, img)
	})
	// Written on the agent's own period: the kernel destroyed above
	// leaves the count at 0 by the next write.
	testutil.Eventually(t, testutil.Slow(15*time.Second), "container_count 0 after the destroy", func() bool {
		n, err := stat.Get(ctx, "container_count."+s.id).Int()
		return err == nil && n == 0
	})
	if md, _ := stat.HGetAll(ctx, "computer.metadata").Result(); md["cpu"] == "" || md["ram"] == "" {
		t.Fatalf("computer.metadata %v", md)
	}
	var cid string
	for _, e := range evs {
		if e.Name == "do_sync_kernel_logs" && e.Payload["kernel_id"] == kid {
			cid, _ = e.Payload["container_id"].(string)
		}
	}
	chunks, _ := clog.LRange(ctx, "containerlog."+cid, 0, -1).Result()
	if cid == "" || len(chunks) == 0 || !strings.Contains(chunks[0], `"compress_type":"zlib"`) {
		t.Fatalf("container logs for %q: %v", cid, chunks)
	}
}

func readNS(t *testing.T, cfg string) string {
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "namespace") {
			v := strings.TrimSpace(strings.SplitN(line, "=", 2)[1])
			s, _ := strconv.Unquote(v)
			return s
		}
	}
	return ""
}

// Redis goes away during a burst of creates and destroys, and the agent
// is SIGKILLed while it is away: when Redis answers again every lifecycle
// event arrives, in order per kernel, and heartbeats resume within one
// interval.
func TestRedisOutage_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	s := newStack(t, "")
	s.start()
	s.readEvents(10*time.Second, func(evs []event) bool { return countName(evs, "agent_started") >= 1 })
	outage := 8 * time.Second
	if v, err := strconv.Atoi(os.Getenv("BAI_OUTAGE_SECONDS")); err == nil && v > 0 {
		outage = time.Duration(v) * time.Second
	}
	s.redis.Stop()
	start := time.Now()
	var kids []string
	for i := 0; i < 3; i++ {
		kid := s.createKernel(img)
		kids = append(kids, kid)
		if i < 2 {
			s.ctl("destroy", kid)
		}
	}
	// SIGKILL with events still queued; restart while Redis is still down.
	s.kill()
	s.start()
	s.ctl("destroy", kids[2])
	if el := time.Since(start); el < outage {
		time.Sleep(outage - el)
	}
	s.redis.Start()
	back := time.Now()
	// The restarted Redis is empty: recreate the group from the start.
	if err := s.rdb.XGroupCreateMkStream(context.Background(), "events", "manager", "0").Err(); err != nil {
		t.Fatal(err)
	}
	var firstBeat time.Time
	evs := s.readEvents(60*time.Second, func(evs []event) bool {
		if firstBeat.IsZero() && countName(evs, "agent_heartbeat") > 0 {
			firstBeat = time.Now()
		}
		for _, k := range kids {
			if !strings.Contains(strings.Join(kernelEvents(evs, k), ","), "kernel_terminated") {
				return false
			}
		}
		return !firstBeat.IsZero()
	})
	for _, k := range kids {
		seq := kernelEvents(evs, k)
		joined := strings.Join(seq, ",")
		if !strings.HasPrefix(joined, "kernel_preparing,kernel_creating,kernel_started") || !strings.Contains(joined, "kernel_terminated") {
			t.Fatalf("kernel %s events: %s", k, joined)
		}
		// Duplicates allowed only where the manager tolerates them
		// (kernel_started on re-adoption, kernel_terminated twice).
		for _, name := range []string{"kernel_preparing", "kernel_creating"} {
			n := 0
			for _, x := range seq {
				if x == name {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("kernel %s: %s seen %d times (%s)", k, name, n, joined)
			}
		}
	}
	// Bound: go-redis' pool probes a failed server once a second, the
	// next beat is up to an interval away, and a beat that cannot connect
	// within half an interval waits for the one after.
	if firstBeat.IsZero() || firstBeat.Sub(back) > testutil.Slow(5*time.Second) {
		t.Fatalf("heartbeat did not resume within an interval (+ reconnect): %v", firstBeat.Sub(back))
	}
	t.Logf("outage %s; %d events delivered after Redis came back", outage, len(evs))
}

func TestVolumeEvents_Integration(t *testing.T) {
	s := newStack(t, "")
	s.start()
	ctx := context.Background()
	wait := s.broadcasts()
	payload, _ := json.Marshal(map[string]any{"dir_name": "vol1", "volume_backend_name": "nfs", "quota_scope_id": "user:1", "fs_location": "/srv", "fs_type": "nfs", "cmd_options": "", "scaling_group": "default", "edit_fstab": false, "fstab_path": "/etc/fstab"})
	msg, _ := json.Marshal(map[string]any{"name": "do_volume_mount", "source": "i-mgr", "payload": string(payload)})
	// Two subscribers: the test's own (above) and the agent's.
	testutil.Eventually(t, 10*time.Second, "agent subscribed", func() bool {
		n, _ := s.rdb.PubSubNumSub(ctx, "events_all").Result()
		return n["events_all"] >= 2
	})
	if err := s.rdb.Publish(ctx, "events_all", string(msg)).Err(); err != nil {
		t.Fatal(err)
	}
	// Broadcast, as the Python agent's handle_volume_mount does.
	p := wait("volume_mounted", 10*time.Second)
	if p["node_id"] != s.id || p["node_type"] != "agent" || p["err_msg"] != nil {
		t.Fatalf("volume_mounted: %v", p)
	}
}

// check_and_pull from a local docker-registry: byte progress, image_pull_*
// and bgtask_* events (with the bgtask.{id} cache), `ctl pull`'s bar; a
// missing image and an unreachable registry fail with a clear message.
func TestImagePull_Integration(t *testing.T) {
	registry := testutil.StartRegistry(t)
	be := testutil.RequireDocker(t)
	ctx := context.Background()
	remote := registry + "/bai-test/pullme:" + uuid.NewString()[:8]
	testutil.ImportRandomImage(t, be, remote, 8<<20)
	t.Cleanup(func() { _ = be.RemoveImage(context.Background(), remote, true, false) })
	if err := be.PushImage(ctx, remote, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := be.RemoveImage(ctx, remote, false, true); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, "")
	sub := s.rdb.Subscribe(ctx, "events_all")
	defer sub.Close()
	s.start()
	out, err := exec.Command(s.bin, "ctl", "--addr", s.rpc, "pull", remote).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl pull: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "[====") || !strings.Contains(string(out), "done: pulled") {
		t.Fatalf("progress output:\n%s", out)
	}
	if _, err := be.InspectImage(ctx, remote); err != nil {
		t.Fatalf("image not present after pull: %v", err)
	}
	evs := s.readEvents(10*time.Second, func(evs []event) bool { return countName(evs, "image_pull_finished") > 0 })
	if countName(evs, "image_pull_started") != 1 || countName(evs, "image_pull_finished") != 1 {
		t.Fatalf("pull events: %v", evs)
	}
	var sawUpdate, sawDone bool
	var taskID string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !(sawUpdate && sawDone) {
		msg, err := sub.ReceiveTimeout(ctx, time.Second)
		if err != nil {
			continue
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		var b struct{ Name, Payload string }
		_ = json.Unmarshal([]byte(m.Payload), &b)
		var p map[string]any
		_ = json.Unmarshal([]byte(b.Payload), &p)
		switch b.Name {
		case "bgtask_updated":
			sawUpdate = p["total_progress"].(float64) > 0
		case "bgtask_done":
			sawDone = true
			taskID, _ = p["task_id"].(string)
		}
	}
	if !sawUpdate || !sawDone {
		t.Fatalf("bgtask broadcasts: updated=%v done=%v", sawUpdate, sawDone)
	}
	if v, err := s.rdb.Get(ctx, "bgtask."+taskID).Result(); err != nil || !strings.Contains(v, "bgtask_done") {
		t.Fatalf("bgtask cache: %q %v", v, err)
	}
	for _, bad := range []string{registry + "/bai-test/nosuch:1", "127.0.0.1:1/bai-test/x:1"} {
		out, err := exec.Command(s.bin, "ctl", "--addr", s.rpc, "pull", bad).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "failed") {
			t.Fatalf("pull %s: %v\n%s", bad, err, out)
		}
	}
	evs = s.readEvents(10*time.Second, func(evs []event) bool { return countName(evs, "image_pull_failed") >= 2 })
	for _, e := range evs {
		if e.Name == "image_pull_failed" && (e.Payload["msg"] == "" || e.Payload["agent_id"] != s.id) {
			t.Fatalf("image_pull_failed: %v", e.Payload)
		}
	}
}

// BenchmarkIdleRSSWithControlPlane reports the agent's resident memory when
// idle but connected to etcd and Redis (heartbeat every second, state
// writers, the volume subscription), 5 s after it started.
func BenchmarkIdleRSSWithControlPlane(b *testing.B) {
	s := newStack(b, "")
	s.start()
	time.Sleep(5 * time.Second)
	kb := rssKiB(b, s.cmd.Process.Pid)
	for i := 0; i < b.N; i++ {
	}
	b.ReportMetric(float64(kb)/1024, "MiB-rss")
}

// Without a cohabiting storage proxy the agent mounts the volume itself
// (a local directory is bind-mounted under mount-path) and unmounts it.
func TestVolumeMountLocal_Integration(t *testing.T) {
	s := newStack(t, "cohabiting-storage-proxy = false")
	s.start()
	ctx := context.Background()
	wait := s.broadcasts()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("vol"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two subscribers: the test's own (above) and the agent's.
	testutil.Eventually(t, 10*time.Second, "agent subscribed", func() bool {
		n, _ := s.rdb.PubSubNumSub(ctx, "events_all").Result()
		return n["events_all"] >= 2
	})
	send := func(name string, p map[string]any) {
		payload, _ := json.Marshal(p)
		msg, _ := json.Marshal(map[string]any{"name": name, "source": "i-mgr", "payload": string(payload)})
		if err := s.rdb.Publish(ctx, "events_all", string(msg)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	send("do_volume_mount", map[string]any{"dir_name": "vol2", "volume_backend_name": "local", "quota_scope_id": "user:1", "fs_location": src, "fs_type": "none", "cmd_options": ""})
	p := wait("volume_mounted", 10*time.Second)
	if p["err_msg"] != nil {
		t.Fatalf("mount failed: %v", p)
	}
	mp, _ := p["mount_path"].(string)
	if b, err := os.ReadFile(filepath.Join(mp, "marker")); err != nil || string(b) != "vol" {
		t.Fatalf("volume not mounted at %q: %v", mp, err)
	}
	send("do_volume_unmount", map[string]any{"dir_name": "vol2", "volume_backend_name": "local", "quota_scope_id": "user:1"})
	if p := wait("volume_unmounted", 10*time.Second); p["err_msg"] != nil {
		t.Fatalf("unmount failed: %v", p)
	}
	if _, err := os.Stat(filepath.Join(mp, "marker")); err == nil {
		t.Fatal("still mounted after unmount")
	}
	send("do_volume_mount", map[string]any{"dir_name": "../escape", "fs_location": src})
	if p := wait("volume_mounted", 10*time.Second); p["err_msg"] == nil {
		t.Fatalf("escaping dir_name accepted: %v", p)
	}
}

// SIGTERM stops an agent connected to etcd and Redis promptly, delivers
// agent_terminated, and leaves the kernels running.
func TestGracefulShutdown_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	s := newStack(t, "")
	s.start()
	kid := s.createKernel(img)
	t0 := time.Now()
	s.stop()
	if el := time.Since(t0); el > testutil.Slow(15*time.Second) {
		t.Fatalf("shutdown took %s", el)
	}
	evs := s.readEvents(10*time.Second, func(evs []event) bool { return countName(evs, "agent_terminated") > 0 })
	if countName(evs, "agent_terminated") != 1 {
		t.Fatalf("agent_terminated not delivered: %v", evs)
	}
	be := testutil.RequireDocker(t)
	list, err := be.List(context.Background(), map[string]string{"ai.backend.kernel-id": kid})
	if err != nil || len(list) != 1 || !list[0].Running {
		t.Fatalf("kernel container after shutdown: %v %+v", err, list)
	}
}

// managerPeerPython is Debian's python3 with the modules the manager
// peers (test/pypeer) import.
func managerPeerPython(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	for _, mod := range []string{"zmq", "msgpack", "redis"} {
		if err := exec.Command(py, "-c", "import "+mod).Run(); err != nil {
			testutil.Missing(t, "python3-%s (apt-get install python3-%s)", mod, mod)
		}
	}
	return py
}

// An image removed behind the agent's back (an operator's docker rmi) is
// reported to the manager by the periodic scan, with the canonical and
// digest upstream's AgentInstalledImagesRemoveEvent carries.
func TestInstalledImageRemovedEvent_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	tag := "bai-test/rmscan:" + strings.ReplaceAll(uuid.NewString(), "-", "")[:10]
	if out, err := exec.Command("docker", "tag", img, tag).CombinedOutput(); err != nil {
		t.Fatalf("docker tag: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", tag).Run() })
	digest, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", tag).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, "")
	s.start()
	ctx := context.Background()
	img3 := redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 3})
	defer img3.Close()
	testutil.Eventually(t, 20*time.Second, "the scan lists the new tag", func() bool {
		v, _ := img3.Get(ctx, "installed_image:"+s.id).Result()
		return strings.Contains(v, tag)
	})
	if out, err := exec.Command("docker", "rmi", tag).CombinedOutput(); err != nil {
		t.Fatalf("docker rmi: %v\n%s", err, out)
	}
	// Other packages' tests share the engine and remove labelled images
	// of their own (committed images, export tags) while this runs: their
	// removals may come in events of their own or beside this one, so the
	// test looks for its tag, not for a lone event.
	removed := func(e event) map[string]any {
		if e.Name != "agent_installed_images_remove" {
			return nil
		}
		imgs, _ := e.Payload["scanned_images"].(map[string]any)
		got, _ := imgs[tag].(map[string]any)
		return got
	}
	evs := s.readEvents(30*time.Second, func(evs []event) bool {
		for _, e := range evs {
			if removed(e) != nil {
				return true
			}
		}
		return false
	})
	found := 0
	for _, e := range evs {
		got := removed(e)
		if got == nil {
			continue
		}
		found++
		if e.Source != s.id {
			t.Fatalf("from %q", e.Source)
		}
		if got["canonical"] != tag || got["digest"] != strings.TrimSpace(string(digest)) {
			t.Fatalf("scanned_images entry %v, want %s with digest %s", got, tag, digest)
		}
	}
	if found != 1 {
		t.Fatalf("%d removal events name %s, want 1", found, tag)
	}
}

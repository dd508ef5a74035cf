package observer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	kid1 = "11111111-1111-4111-8111-111111111111"
	kid2 = "22222222-2222-4222-8222-222222222222"
	kid3 = "33333333-3333-4333-8333-333333333333"
)

func TestOrphanTick_Fake(t *testing.T) {
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}, {kid2, "s2"}, {kid3, "s3"}}}
	st := &fakePresence{
		agent: map[string]string{"i-a": "10000"},
		presence: map[string]map[string]string{
			kid1: {"presence": "1", "last_check": "9399"}, // orphan
			kid2: {"presence": "1", "last_check": "9400"}, // boundary: kept
			// kid3: no hash
		},
	}
	r := &OrphanReaper{o: OrphanOptions{AgentID: "i-a", Agent: ag, Store: st, Log: testLog(t)}}
	if err := r.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := ag.Calls()
	if len(calls) != 1 || calls[0] != (destroyCall{kid1, "s1", "not-found-in-manager", true}) {
		t.Fatalf("destroys %+v", calls)
	}

	t.Run("no agent key: nothing read, nothing destroyed", func(t *testing.T) {
		ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
		st := &fakePresence{presence: map[string]map[string]string{kid1: {"presence": "1", "last_check": "0"}}}
		r := &OrphanReaper{o: OrphanOptions{AgentID: "i-a", Agent: ag, Store: st, Log: testLog(t)}}
		if err := r.Tick(context.Background()); err != nil || len(ag.Calls()) != 0 {
			t.Fatalf("err %v calls %+v", err, ag.Calls())
		}
	})
	t.Run("agent key not an integer: the tick fails, nothing destroyed", func(t *testing.T) {
		ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
		st := &fakePresence{agent: map[string]string{"i-a": "1.7e9"}, presence: map[string]map[string]string{kid1: {"presence": "1", "last_check": "0"}}}
		r := &OrphanReaper{o: OrphanOptions{AgentID: "i-a", Agent: ag, Store: st, Log: testLog(t)}}
		if err := r.Tick(context.Background()); err == nil || !strings.Contains(err.Error(), "agent:last_check:i-a") || len(ag.Calls()) != 0 {
			t.Fatalf("err %v calls %+v", err, ag.Calls())
		}
	})
	t.Run("destroy failure is reported with the kernel's id", func(t *testing.T) {
		ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}, fail: map[string]error{kid1: errors.New("boom")}}
		st := &fakePresence{agent: map[string]string{"i-a": "10000"}, presence: map[string]map[string]string{kid1: {"presence": "1", "last_check": "0"}}}
		r := &OrphanReaper{o: OrphanOptions{AgentID: "i-a", Agent: ag, Store: st, Log: testLog(t)}}
		if err := r.Tick(context.Background()); err == nil || !strings.Contains(err.Error(), kid1) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("err %v", err)
		}
	})
}

// A Redis outage fails a tick (logged), the loop keeps going, and the
// next tick after Redis is back does the work; a panic in a tick does not
// end the loop either.
func TestOrphanLoopSurvivesOutageAndPanic_Fake(t *testing.T) {
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	st := &fakePresence{err: errOutage}
	r := StartOrphanReaper(OrphanOptions{AgentID: "i-a", Agent: ag, Store: st, Interval: 5 * time.Millisecond, Log: testLog(t)})
	defer r.Close()
	poll(t, 5*time.Second, "three failed reads", func() bool { return st.Reads() >= 3 })
	st.set(func(f *fakePresence) { f.err = nil; f.panicky = true })
	n := st.Reads()
	poll(t, 5*time.Second, "ticks that panic", func() bool { return st.Reads() >= n+3 })
	if len(ag.Calls()) != 0 {
		t.Fatalf("destroyed during the outage: %+v", ag.Calls())
	}
	st.set(func(f *fakePresence) {
		f.panicky = false
		f.agent = map[string]string{"i-a": "10000"}
		f.presence = map[string]map[string]string{kid1: {"presence": "1", "last_check": "1"}}
	})
	poll(t, 5*time.Second, "the orphan destroyed once Redis is back", func() bool { return len(ag.Calls()) == 1 })
}

// Close waits for a destroy in progress and leaves no goroutine behind
// (TestMain checks with goleak).
func TestOrphanCloseWaitsForDestroy_Fake(t *testing.T) {
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}, block: make(chan struct{})}
	st := &fakePresence{agent: map[string]string{"i-a": "10000"}, presence: map[string]map[string]string{kid1: {"presence": "1", "last_check": "1"}}}
	r := StartOrphanReaper(OrphanOptions{AgentID: "i-a", Agent: ag, Store: st, Interval: time.Hour, Log: testLog(t)})
	poll(t, 5*time.Second, "the first tick's read", func() bool { return st.Reads() == 1 })
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	close(ag.block)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if len(ag.Calls()) != 1 {
		t.Fatalf("calls %+v", ag.Calls())
	}
	r.Close() // twice is fine
}

func abuseDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "abuse", "reports") // created by Start
}

func report(id, reason string) string {
	return `{"ID":"` + id + `","CID":"c-` + id[:4] + `","reason":"` + reason + `"}`
}

func TestAbuseTickTerminate_Fake(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "reports")
	outside := filepath.Join(base, "outside.json")
	writeFile(t, outside, report(kid3, "")) // a registered kernel's report, outside the folder
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "report.k1.json"), report(kid1, "hang-timeout"))
	writeFile(t, filepath.Join(dir, "report.k2.json"), report(kid2, ""))
	writeFile(t, filepath.Join(dir, "report.unknown.json"), report("44444444-4444-4444-8444-444444444444", ""))
	writeFile(t, filepath.Join(dir, "report.bad.json"), `{"ID": nope`)
	writeFile(t, filepath.Join(dir, "report.huge.json"), `{"ID":"`+kid3+`","pad":"`+strings.Repeat("x", maxReportSize)+`"}`)
	writeFile(t, filepath.Join(dir, "notes.txt"), report(kid3, ""))
	if err := os.Symlink(outside, filepath.Join(dir, "report.link.json")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "report.fifo.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}, {kid2, "s2"}, {kid3, "s3"}}}
	st := &fakeAbuseStore{}
	a := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: true, Agent: ag, Store: st, Log: testLog(t)}}
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := ag.Calls()
	want := map[destroyCall]bool{{kid1, "s1", "hang-timeout", false}: true, {kid2, "s2", "anomaly-detected", false}: true}
	if len(calls) != 2 || !want[calls[0]] || !want[calls[1]] {
		t.Fatalf("destroys %+v", calls)
	}
	if h, _ := st.Last(); len(h) != 2 || h[kid1] != "cleaning" || h[kid2] != "cleaning" {
		t.Fatalf("hash %v", h)
	}
	left := listDir(t, dir)
	for _, gone := range []string{"report.k1.json", "report.k2.json"} {
		if left[gone] {
			t.Errorf("%s not removed", gone)
		}
	}
	for _, kept := range []string{"report.unknown.json", "report.bad.json", "report.huge.json", "report.link.json", "report.fifo.json", "notes.txt", "report.lock"} {
		if !left[kept] {
			t.Errorf("%s removed", kept)
		}
	}
	if b, err := os.ReadFile(outside); err != nil || !strings.Contains(string(b), kid3) {
		t.Errorf("the link's target was touched: %q %v", b, err)
	}

	// The next scan: nothing left to act on; the hash is emptied.
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h, n := st.Last(); n != 2 || len(h) != 0 {
		t.Fatalf("second hash %v (%d writes)", h, n)
	}
	if len(ag.Calls()) != 2 {
		t.Fatalf("destroys %+v", ag.Calls())
	}
}

func TestAbuseTickDetectOnly_Fake(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "report.k1.json"), report(kid1, "hang-timeout"))
	writeFile(t, filepath.Join(dir, "report.x.json"), report(kid3, ""))
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	st := &fakeAbuseStore{}
	a := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: false, Agent: ag, Store: st, Log: testLog(t)}}
	for range 2 {
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if h, _ := st.Last(); len(h) != 2 || h[kid1] != "detected" || h[kid3] != "detected" {
			t.Fatalf("hash %v", h)
		}
	}
	if len(ag.Calls()) != 0 {
		t.Fatalf("destroyed %+v", ag.Calls())
	}
	if left := listDir(t, dir); !left["report.k1.json"] || !left["report.x.json"] {
		t.Fatalf("reports removed: %v", left)
	}
}

// A failed destroy keeps the report for the next scan; a Redis failure
// does not stop the destroys.
func TestAbuseTickFailures_Fake(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "report.k1.json"), report(kid1, ""))
	writeFile(t, filepath.Join(dir, "report.k2.json"), report(kid2, ""))
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}, {kid2, "s2"}}, fail: map[string]error{kid2: errors.New("engine down")}}
	st := &fakeAbuseStore{err: errOutage}
	a := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: true, Agent: ag, Store: st, Log: testLog(t)}}
	err := a.Tick(context.Background())
	if err == nil || !strings.Contains(err.Error(), "abuse_report") || !strings.Contains(err.Error(), kid2) {
		t.Fatalf("err %v", err)
	}
	left := listDir(t, dir)
	if left["report.k1.json"] || !left["report.k2.json"] {
		t.Fatalf("left %v", left)
	}
	if len(ag.Calls()) != 2 {
		t.Fatalf("calls %+v", ag.Calls())
	}
}

// While another program holds report.lock the scan gives up after the
// lock timeout without touching the hash; it succeeds once the lock is
// released.
func TestAbuseTickLockHeld_Fake(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "report.k1.json"), report(kid1, ""))
	lf, err := os.OpenFile(filepath.Join(dir, "report.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	st := &fakeAbuseStore{}
	a := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: true, Agent: ag, Store: st, Log: testLog(t)}}
	start := time.Now()
	if err := a.Tick(context.Background()); err == nil || !strings.Contains(err.Error(), "report.lock") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d < lockTimeout || d > lockTimeout+5*time.Second {
		t.Errorf("gave up after %s, want about %s", d, lockTimeout)
	}
	if _, n := st.Last(); n != 0 || len(ag.Calls()) != 0 {
		t.Fatalf("acted without the lock: %d writes, %+v", n, ag.Calls())
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(ag.Calls()) != 1 {
		t.Fatalf("calls %+v", ag.Calls())
	}
}

// A lock file that is a link (to a host file) is refused, not followed.
func TestAbuseTickLockIsLink_Fake(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "reports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(base, "host-file")
	writeFile(t, target, "host data")
	if err := os.Symlink(target, filepath.Join(dir, "report.lock")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "report.k1.json"), report(kid1, ""))
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	a := &AbuseReports{o: AbuseOptions{Dir: dir, Terminate: true, Agent: ag, Store: &fakeAbuseStore{}, Log: testLog(t)}}
	if err := a.Tick(context.Background()); err == nil {
		t.Fatal("scan went ahead with a linked lock file")
	}
	if b, _ := os.ReadFile(target); string(b) != "host data" || len(ag.Calls()) != 0 {
		t.Fatalf("target %q calls %+v", b, ag.Calls())
	}
}

// Start creates the folder; the loop scans at once and then every
// interval; Close stops it.
func TestAbuseLoop_Fake(t *testing.T) {
	dir := abuseDir(t)
	ag := &fakeAgent{kernels: []Kernel{{kid1, "s1"}}}
	st := &fakeAbuseStore{}
	a := StartAbuseReports(AbuseOptions{Dir: dir, Terminate: true, Agent: ag, Store: st, Interval: 5 * time.Millisecond, Log: testLog(t)})
	defer a.Close()
	poll(t, 5*time.Second, "a first scan", func() bool { _, n := st.Last(); return n >= 1 })
	writeFile(t, filepath.Join(dir, "report.k1.json"), report(kid1, ""))
	poll(t, 5*time.Second, "the reported kernel destroyed", func() bool { return len(ag.Calls()) == 1 })
	poll(t, 5*time.Second, "its report removed", func() bool { return !listDir(t, dir)["report.k1.json"] })
}

func listDir(t *testing.T, dir string) map[string]bool {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range es {
		out[e.Name()] = true
	}
	return out
}

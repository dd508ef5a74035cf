package lokilog

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// receiver checks every push against Loki's documented push API (JSON
// form): POST /loki/api/v1/push, Content-Type application/json, a body of
// {"streams": [{"stream": {label: value}, "values": [[ns, line]]}]} with
// nanosecond timestamps as strings. Loki itself is not packaged for this
// machine; this receiver stands in for it.
type receiver struct {
	t        *testing.T
	mu       sync.Mutex
	streams  []pushStream
	failNext atomic.Int32
	tenant   string
	user     string
}

type pushStream struct {
	Stream map[string]string `json:"stream"`
	Values [][]string        `json:"values"`
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/loki/api/v1/push" {
		rc.t.Errorf("push to %s %s", r.Method, r.URL.Path)
		http.Error(w, "not found", 404)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		rc.t.Errorf("content type %q", ct)
	}
	if got := r.Header.Get("X-Scope-OrgID"); got != rc.tenant {
		rc.t.Errorf("tenant %q, want %q", got, rc.tenant)
	}
	if u, _, _ := r.BasicAuth(); u != rc.user {
		rc.t.Errorf("basic auth user %q, want %q", u, rc.user)
	}
	if rc.failNext.Load() > 0 {
		rc.failNext.Add(-1)
		http.Error(w, "ingester unavailable", 503)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var body struct {
		Streams []pushStream `json:"streams"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || len(body.Streams) == 0 {
		rc.t.Errorf("push body %s: %v", b, err)
	}
	for _, s := range body.Streams {
		for _, v := range s.Values {
			if len(v) != 2 {
				rc.t.Errorf("value %v is not [ts, line]", v)
				continue
			}
			if ns, err := strconv.ParseInt(v[0], 10, 64); err != nil || ns < 1e18 {
				rc.t.Errorf("timestamp %q is not nanoseconds", v[0])
			}
		}
	}
	rc.mu.Lock()
	rc.streams = append(rc.streams, body.Streams...)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) lines(filter func(map[string]string) bool) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, s := range rc.streams {
		if filter(s.Stream) {
			for _, v := range s.Values {
				out = append(out, v[1])
			}
		}
	}
	return out
}

func TestPushFormatLabelsAndRetry(t *testing.T) {
	rc := &receiver{t: t, tenant: "team-a", user: "agent"}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	rc.failNext.Store(2) // the first pushes fail: retried with backoff
	p := New(Options{URL: srv.URL, AgentID: "i-node", Tenant: "team-a", Username: "agent", Password: "pw", BatchWait: 50 * time.Millisecond})
	log := slog.New(p.Handler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log.Info("agent started", "version", "1")
	klog := log.With("kernel_id", "k-1")
	klog.Warn("kernel exited", "exit_code", 3)
	log.Error("boom")
	log.Debug("details")
	testutil.Eventually(t, 10*time.Second, "all four records pushed", func() bool { return p.Pushed() >= 4 })
	p.Close()
	for _, tc := range []struct {
		level, kernel, want string
	}{
		{"info", "", `agent started version="1"`},
		{"warning", "k-1", `kernel exited kernel_id="k-1" exit_code="3"`},
		{"error", "", "boom"},
		{"debug", "", "details"},
	} {
		got := rc.lines(func(l map[string]string) bool {
			return l["agent_id"] == "i-node" && l["level"] == tc.level && l["kernel_id"] == tc.kernel && (tc.kernel != "" || len(l) == 2)
		})
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("level %s kernel %q: %v, want [%s]", tc.level, tc.kernel, got, tc.want)
		}
	}
	if p.Dropped() != 0 {
		t.Errorf("%d dropped", p.Dropped())
	}
}

// With Loki unreachable logging costs the same: records go to a bounded
// buffer and the overflow is counted, never waited for.
func TestUnreachableLokiDoesNotBlock(t *testing.T) {
	p := New(Options{URL: fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t)), AgentID: "i-node", Buffer: 1000, BatchWait: 10 * time.Millisecond, Timeout: time.Second})
	defer p.Close()
	log := slog.New(p.Handler(slog.NewTextHandler(io.Discard, nil)))
	plain := slog.New(slog.NewTextHandler(io.Discard, nil))
	const n = 20000
	t0 := time.Now()
	for i := 0; i < n; i++ {
		plain.Info("record", "i", i)
	}
	base := time.Since(t0)
	t0 = time.Now()
	for i := 0; i < n; i++ {
		log.Info("record", "i", i)
	}
	shipped := time.Since(t0)
	t.Logf("%d records: %s without Loki shipping, %s with an unreachable Loki; %d dropped", n, base, shipped, p.Dropped())
	if shipped > testutil.Slow(20*base+200*time.Millisecond) {
		t.Fatalf("logging slowed by an unreachable Loki: %s vs %s", shipped, base)
	}
	// At most 2×Buffer wait (queue + batch held for retry), plus the one
	// record the sender may hold between the two at the moment we look.
	if p.Dropped() < n-2*1000-1 {
		t.Fatalf("only %d dropped of %d with a 1000-record buffer", p.Dropped(), n)
	}
}

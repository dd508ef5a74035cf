package metrics

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRegistryText(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounter("x_requests", "Requests.", "method")
	g := r.NewGauge("x_util", "Util.", "kernel_id", "value_type")
	h := r.NewHistogram("x_seconds", "Dur.", []float64{0.1, 1}, "method")
	c.Inc("ping")
	c.Add(2, "ping")
	g.Set(1.5, "k1", "current")
	g.Set(2, "k2", "current")
	h.Observe(0.05, "ping")
	h.Observe(0.5, "ping")
	g.DeleteMatching("kernel_id", "k2")
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP x_requests_total Requests.
# TYPE x_requests_total counter
x_requests_total{method="ping"} 3
# HELP x_seconds Dur.
# TYPE x_seconds histogram
x_seconds_bucket{method="ping",le="0.1"} 1
x_seconds_bucket{method="ping",le="1"} 2
x_seconds_bucket{method="ping",le="+Inf"} 2
x_seconds_sum{method="ping"} 0.55
x_seconds_count{method="ping"} 2
# HELP x_util Util.
# TYPE x_util gauge
x_util{kernel_id="k1",value_type="current"} 1.5
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, keyPath
}

func TestServerTLSAndProbes(t *testing.T) {
	cert, key := selfSigned(t)
	a := NewAgent()
	a.KernelCount.Set(3, "i-x")
	failing := errors.New("redis down")
	var redisErr atomic.Pointer[error]
	s, err := Start(a.Reg, Options{Addr: "127.0.0.1:0", TLSCert: cert, TLSKey: key, Version: "v", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: 50 * time.Millisecond,
		Checks: []Check{{Name: "redis", Group: "valkey", Probe: func(context.Context) error {
			if p := redisErr.Load(); p != nil {
				return *p
			}
			return nil
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(p string) (int, string) {
		resp, err := cl.Get("https://" + s.Addr() + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `backendai_kernel_count{agent_id="i-x"} 3`) {
		t.Fatalf("/metrics over TLS: %d %s", code, body)
	}
	// The first round of checks runs in the background after Start: not
	// ready until it has, then ready.
	ready := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !ready; time.Sleep(20 * time.Millisecond) {
		code, _ := get("/readyz")
		ready = code == 200
	}
	if !ready {
		t.Fatal("/readyz never became ready with a healthy check")
	}
	redisErr.Store(&failing)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := get("/readyz"); code == 503 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get("/livez"); code != 503 || !strings.Contains(body, "redis down") {
		t.Fatalf("/livez with a failing check: %d %s", code, body)
	}
	if code, body := get("/health"); code != 200 || !strings.Contains(body, `"status":"degraded"`) {
		t.Fatalf("/health: %d %s", code, body)
	}
	if _, err := http.Get("http://" + s.Addr() + "/metrics"); err == nil {
		// A plain-HTTP request to a TLS listener must not get metrics.
		resp, _ := http.Get("http://" + s.Addr() + "/metrics")
		if resp != nil && resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS port")
		}
	}
}

// Upstream's bucket lists and the common registry's series shapes.
func TestUpstreamShapes(t *testing.T) {
	a := NewAgent()
	a.Observe("ping", "", 50*time.Millisecond)
	a.ObserveEvent("do_volume_mount", "", 2*time.Millisecond)
	a.ObserveEvent("do_volume_unmount", "OSError", time.Millisecond)
	a.BgTaskStarted("pull_image")
	a.BgTaskStarted("pull_image")
	a.BgTaskFinished("pull_image", BgTaskStatusDone, 2*time.Second)
	a.BgTaskFinished("pull_image", BgTaskStatusCancelled, time.Second)
	a.ProcMemRSS.Set(1024)
	var b bytes.Buffer
	if err := a.Reg.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{
		`backendai_rpc_request_duration_seconds_bucket{method="ping",le="0.1"} 1`,
		`backendai_rpc_request_duration_seconds_bucket{method="ping",le="600"} 1`,
		"# TYPE backendai_stat_task_duration_sec histogram",
		`backendai_event_count_total{event_type="do_volume_mount"} 1`,
		`backendai_event_failure_count_total{event_type="do_volume_unmount",exception="OSError",domain="backendai",operation="generic",error_detail="internal-error"} 1`,
		`backendai_event_processing_time_sec_bucket{event_type="do_volume_mount",status="success",domain="",operation="",error_detail="",le="0.01"} 1`,
		`backendai_bgtask_count{task_name="pull_image"} 0`,
		`backendai_bgtask_done_count_total{task_name="pull_image",status="bgtask_done",domain="",operation="",error_detail=""} 1`,
		`backendai_bgtask_done_count_total{task_name="pull_image",status="bgtask_cancelled",domain="bgtask",operation="execute",error_detail="canceled"} 1`,
		`backendai_bgtask_processing_time_sec_bucket{task_name="pull_image",status="bgtask_done",domain="",operation="",error_detail="",le="10"} 1`,
		"backendai_memory_used_rss 1024\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %s", want)
		}
	}
	if strings.Contains(s, `backendai_rpc_request_duration_seconds_bucket{method="ping",le="0.001"}`) {
		t.Error("RPC histogram still has the old 1 ms bucket")
	}
	wantStat := []float64{0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600}
	if fmt.Sprint(StatBuckets) != fmt.Sprint(wantStat) || fmt.Sprint(RPCBuckets) != fmt.Sprint([]float64{0.1, 1, 10, 30, 60, 300, 600}) {
		t.Errorf("buckets: %v %v", RPCBuckets, StatBuckets)
	}
}

// Go's profiles are served only with [debug] enabled, and never with the
// CORS header the other paths carry (no web page may read them).
func TestPprofOnlyWhenEnabled(t *testing.T) {
	tests := []struct {
		name  string
		pprof bool
		want  int
	}{
		{"debug off", false, http.StatusNotFound},
		{"debug on", true, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(NewAgent().Reg, Options{Addr: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Pprof: tc.pprof})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			resp, err := http.Get("http://" + s.Addr() + "/debug/pprof/heap?debug=1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.pprof && (!strings.Contains(string(body), "heap profile") || resp.Header.Get("Access-Control-Allow-Origin") != "") {
				t.Fatalf("profile %.60q with CORS header %q", body, resp.Header.Get("Access-Control-Allow-Origin"))
			}
			// The other paths keep working either way.
			resp, err = http.Get("http://" + s.Addr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Fatalf("/metrics: %d %v", resp.StatusCode, resp.Header)
			}
		})
	}
}

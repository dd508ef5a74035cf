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

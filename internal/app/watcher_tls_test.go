package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/app"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// With [watcher] ssl-enabled the API is served over TLS only, and the
// token of a node without etcd comes from [watcher] token.
func TestWatcherTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testutil.WriteTestCerts(t, dir)
	port := testutil.FreePort(t)
	doc := fmt.Sprintf("[agent]\nbackend = \"docker\"\ncontrol-plane = \"none\"\n[watcher]\nservice-addr = \"127.0.0.1:%d\"\nssl-enabled = true\nssl-cert = %q\nssl-key = %q\ntoken = \"tls-token\"\n", port, cert, key)
	p := filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := config.LoadFile(p, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.RunWatcher(ctx, res.Config, &app.Logging{Log: slog.New(slog.DiscardHandler)}, "systemd")
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	}()
	pem, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(c *http.Client, scheme, token string) (int, string, error) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s://127.0.0.1:%d/", scheme, port), nil)
		req.Header.Set("X-BackendAI-Watcher-Token", token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	var code int
	var body string
	testutil.Eventually(t, 10*time.Second, "the watcher answers over TLS", func() bool {
		code, body, err = get(tlsClient, "https", "tls-token")
		return err == nil
	})
	var st map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st["watcher-status"] != "active" {
		t.Fatalf("GET / over TLS: %d %s", code, body)
	}
	if code, _, _ := get(tlsClient, "https", "insecure"); code != 403 {
		t.Fatalf("default token accepted when [watcher] token is set: %d", code)
	}
	if code, _, err := get(&http.Client{Timeout: 5 * time.Second}, "http", "tls-token"); err == nil && code == 200 {
		t.Fatal("plain HTTP served")
	}
}

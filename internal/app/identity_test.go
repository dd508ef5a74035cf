package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/identity"
)

// TestResolveAgentID: [agent] id wins and nothing is asked; without it the
// id is the cloud's (here a local AWS-like service) or, with the probes
// off, "i-" + host name.
func TestResolveAgentID(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		switch r.URL.Path {
		case "/latest/meta-data/":
			_, _ = w.Write([]byte("ami-id\ninstance-id\n"))
		case "/latest/meta-data/instance-id":
			_, _ = w.Write([]byte("i-0feedface0000001"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		wantID    string
		wantSrc   identity.Source
		wantAsked bool
	}{
		{"configured", "[agent]\nbackend = \"docker\"\nid = \"node-7\"\ninstance-metadata-url = \"" + srv.URL + "\"\n", "node-7", identity.SourceConfig, false},
		{"cloud", "[agent]\nbackend = \"docker\"\ninstance-metadata-url = \"" + srv.URL + "\"\n", "i-0feedface0000001", identity.SourceAWS, true},
		{"probes off", "[agent]\nbackend = \"docker\"\ninstance-metadata-url = \"\"\n", "i-" + host, identity.SourceHostname, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked.Store(0)
			res, err := config.Load("agent.toml", []byte(tc.doc), nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg := res.Config
			got, err := ResolveAgentID(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tc.wantID || got.Source != tc.wantSrc || cfg.Agent.ID != tc.wantID {
				t.Fatalf("got %+v (cfg id %q), want %q from %s", got, cfg.Agent.ID, tc.wantID, tc.wantSrc)
			}
			if (asked.Load() > 0) != tc.wantAsked {
				t.Fatalf("metadata service asked %d times", asked.Load())
			}
			var buf bytes.Buffer
			LogAgentID(slog.New(slog.NewTextHandler(&buf, nil)), got)
			if line := buf.String(); !strings.Contains(line, "agent_id="+tc.wantID) || !strings.Contains(line, "source="+string(tc.wantSrc)) {
				t.Fatalf("log line %q", line)
			}
		})
	}
}

// TestResolveAgentIDRejectsBadID: an id with a slash (an Azure VM name
// cannot have one, but the service is not ours) stops start-up as a
// config error instead of reaching etcd keys and container labels.
func TestResolveAgentIDRejectsBadID(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/latest/meta-data/":
			_, _ = w.Write([]byte("instance-id\n"))
		case "/latest/meta-data/instance-id":
			_, _ = w.Write([]byte("i-a/b"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	res, err := config.Load("agent.toml", []byte("[agent]\nbackend = \"docker\"\ninstance-metadata-url = \""+srv.URL+"\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ResolveAgentID(context.Background(), res.Config)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "i-a/b") {
		t.Fatalf("err %v, want a ConfigError naming the id", err)
	}
}

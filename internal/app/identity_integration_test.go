package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAgentIDFromCloudMetadata_Integration starts the real agent binary
// with no [agent] id on a "GCP instance" (a local metadata service that
// insists on upstream's paths and Metadata-Flavor header): the agent
// registers in etcd, beats and answers ctl under upstream's id for that
// instance, logs where the id came from, and keeps it across a restart.
func TestAgentIDFromCloudMetadata_Integration(t *testing.T) {
	var asked atomic.Int32
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/computeMetadata/") {
			http.NotFound(w, r) // the AWS and Azure probes
			return
		}
		asked.Add(1)
		if r.Header.Get("Metadata-Flavor") != "Google" {
			t.Errorf("%s without Metadata-Flavor: Google", r.URL.Path)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		switch r.URL.Path {
		case "/computeMetadata/v1/instance/id":
			_, _ = w.Write([]byte("4520031799277581759"))
		case "/computeMetadata/v1/instance/name":
			_, _ = w.Write([]byte("gpu-node-3"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(meta.Close)
	// upstream: "i-" + name + "-" + base32(id.to_bytes(8, "big")[-5:]).lower()
	const want = "i-gpu-node-3-7euwr5n7"

	s := newStack(t, fmt.Sprintf("instance-metadata-url = %q", meta.URL))
	body, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	idLine := regexp.MustCompile(`(?m)^id = ".*"\n`)
	if !idLine.Match(body) {
		t.Fatalf("no id line in:\n%s", body)
	}
	if err := os.WriteFile(s.cfg, idLine.ReplaceAll(body, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	s.id = want // the cleanup removes containers owned by this id

	for run := 1; run <= 2; run++ {
		s.start()
		var info map[string]any
		if err := json.Unmarshal([]byte(s.ctl("--json", "info")), &info); err != nil {
			t.Fatal(err)
		}
		if info["agent_id"] != want {
			t.Fatalf("run %d: ctl info agent_id %v, want %s", run, info["agent_id"], want)
		}
		if got := s.etcd.Get(t, "/sorna/"+s.ns+"/nodes/agents/"+want); got == "" {
			t.Fatalf("run %d: not registered in etcd as %s", run, want)
		}
		s.readEvents(30*time.Second, func(evs []event) bool {
			for _, e := range evs {
				if e.Name == "agent_heartbeat" {
					if e.Source != want {
						t.Fatalf("run %d: heartbeat from %q, want %q", run, e.Source, want)
					}
					return true
				}
			}
			return false
		})
		s.stop()
	}
	if asked.Load() < 4 {
		t.Fatalf("the metadata service was asked %d times over two starts", asked.Load())
	}
	log, err := os.ReadFile(s.logf.Name())
	if err != nil {
		t.Fatal(err)
	}
	var chosen []string
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "agent id chosen") {
			chosen = append(chosen, l)
		}
	}
	if len(chosen) != 2 {
		t.Fatalf("want one 'agent id chosen' line per start, got %q", chosen)
	}
	for _, l := range chosen {
		if !strings.Contains(l, want) || !strings.Contains(l, "gcp-instance-metadata") {
			t.Fatalf("log line %q lacks the id or its source", l)
		}
	}
}

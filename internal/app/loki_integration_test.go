package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The agent binary with [logging.loki]: its records about a kernel reach
// a Loki push endpoint labelled agent_id, level and kernel_id, and, with
// the file driver, a JSON log file, minus the component pkg-ns quiets. (Loki is
// not packaged for this machine; the receiver checks the documented push
// format; internal/lokilog's tests check it field by field.)
func TestLokiShipping_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	var mu sync.Mutex
	var labels []map[string]string
	var lines []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/loki/api/v1/push" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad push", 400)
			return
		}
		var body struct {
			Streams []struct {
				Stream map[string]string `json:"stream"`
				Values [][2]string       `json:"values"`
			} `json:"streams"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		for _, s := range body.Streams {
			for _, v := range s.Values {
				labels = append(labels, s.Stream)
				lines = append(lines, v[1])
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	s := newStack(t, "")
	f, err := os.OpenFile(s.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	_, _ = f.WriteString("\n[logging]\ndrivers = [\"console\", \"file\"]\n[logging.file]\npath = \"" + logDir + "\"\nfilename = \"bai-agent.log\"\nformat = \"json\"\n" +
		"[logging.pkg-ns]\nevents = \"ERROR\"\n" +
		"[logging.loki]\nurl = \"" + rcv.URL + "\"\nbatch-wait = 0.2\n")
	f.Close()
	s.start()
	kid := s.createKernel(img)
	s.ctl("destroy", kid)
	testutil.Eventually(t, 15*time.Second, "the kernel's records in Loki", func() bool {
		mu.Lock()
		defer mu.Unlock()
		started, terminated := false, false
		for i, l := range labels {
			if l["kernel_id"] != kid || l["agent_id"] != s.id || l["level"] != "info" {
				continue
			}
			started = started || strings.HasPrefix(lines[i], "kernel started")
			terminated = terminated || strings.HasPrefix(lines[i], "kernel terminated")
		}
		return started && terminated
	})
	// The file driver got the same records, as JSON.
	b, err := os.ReadFile(filepath.Join(logDir, "bai-agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	// pkg-ns quiets the events component (it logs one INFO record at
	// start-up otherwise).
	comps := map[string]int{}
	kernelRecords := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log file line %q: %v", line, err)
		}
		c, _ := rec["component"].(string)
		comps[c+"/"+rec["level"].(string)]++
		if rec["kernel_id"] == kid {
			kernelRecords++
		}
	}
	t.Logf("file records by component/level: %v", comps)
	if kernelRecords < 2 || comps["events/INFO"] != 0 {
		t.Fatalf("log file: %d records about the kernel, by component %v", kernelRecords, comps)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range labels {
		if l["agent_id"] != s.id || l["level"] == "" {
			t.Fatalf("stream labels %v", l)
		}
	}
}

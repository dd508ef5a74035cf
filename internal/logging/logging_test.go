package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/config"
)

func TestRotatingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs") // created by OpenRotating
	f, err := OpenRotating(dir, "agent.log", 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := fmt.Fprintf(f, "record %02d %s\n", i, strings.Repeat("x", 20)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// 31-byte records, 100-byte files: 3 records per file, the current
	// file and two backups hold the last 8 records (20 = 6*3 + 2).
	want := map[string][]string{
		"agent.log":   {"record 18", "record 19"},
		"agent.log.1": {"record 15", "record 16", "record 17"},
		"agent.log.2": {"record 12", "record 13", "record 14"},
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(want) {
		t.Fatalf("files: %v", ents)
	}
	for name, recs := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 100 {
			t.Errorf("%s is %d bytes, over the 100-byte limit", name, len(b))
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != len(recs) {
			t.Fatalf("%s: %q", name, b)
		}
		for i, r := range recs {
			if !strings.HasPrefix(lines[i], r) {
				t.Errorf("%s line %d = %q, want %s", name, i, lines[i], r)
			}
		}
	}
	// Reopening appends and counts what is there.
	f, err = OpenRotating(dir, "agent.log", 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "record 20 %s\n", strings.Repeat("x", 20))
	b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	if !strings.HasPrefix(string(b), "record 18") || !strings.Contains(string(b), "record 20") {
		t.Fatalf("after reopen: %q", b)
	}
	fmt.Fprintf(f, "record 21 %s\n", strings.Repeat("x", 20))
	if b, _ := os.ReadFile(filepath.Join(dir, "agent.log")); !strings.HasPrefix(string(b), "record 21") {
		t.Fatalf("no rotation after reopen: %q", b)
	}
}

func TestLevelsPerComponent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		level  string
		debug  bool
		pkgNS  map[string]string
		comp   string // "" for the core
		passes []slog.Level
	}{
		{"global INFO", "INFO", false, nil, "events", []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"debug flag", "INFO", true, nil, "rpc", []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"python defaults keep INFO", "INFO", false, map[string]string{"": "WARNING", "ai.backend": "DEBUG", "aiohttp": "INFO"}, "", []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"component quieted", "INFO", false, map[string]string{"ai.backend": "DEBUG", "stats": "ERROR"}, "stats", []slog.Level{slog.LevelError}},
		{"other component untouched", "INFO", false, map[string]string{"stats": "ERROR"}, "rpc", []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"one component at DEBUG", "DEBUG", false, map[string]string{"": "INFO", "events": "DEBUG"}, "events", []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"the rest at INFO", "DEBUG", false, map[string]string{"": "INFO", "events": "DEBUG"}, "rpc", []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
		{"dotted prefix", "INFO", false, map[string]string{"rpc": "WARNING"}, "rpc.client", []slog.Level{slog.LevelWarn, slog.LevelError}},
		{"not a prefix", "INFO", false, map[string]string{"rpc": "WARNING"}, "rpcx", []slog.Level{slog.LevelInfo, slog.LevelWarn, slog.LevelError}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			filter, err := Filter(config.LoggingConfig{Level: tc.level, PkgNS: tc.pkgNS}, tc.debug)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			log := slog.New(filter(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if tc.comp != "" {
				log = log.With("component", tc.comp)
			}
			for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
				log.Log(t.Context(), l, "m")
			}
			var got []slog.Level
			dec := json.NewDecoder(&buf)
			for dec.More() {
				var rec struct{ Level slog.Level }
				if err := dec.Decode(&rec); err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Level)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.passes) {
				t.Fatalf("written %v, want %v", got, tc.passes)
			}
		})
	}
	if _, err := Filter(config.LoggingConfig{Level: "INFO", PkgNS: map[string]string{"rpc": "LOUD"}}, false); err == nil || !strings.Contains(err.Error(), "logging.pkg-ns.rpc") {
		t.Fatalf("bad pkg-ns level: %v", err)
	}
}

// TestConsoleAndFile: both drivers get every record, each in its own
// format; logstash is accepted and reported as ignored.
func TestConsoleAndFile(t *testing.T) {
	dir := t.TempDir()
	var c config.LoggingConfig
	c.Level = "INFO"
	c.Drivers = []string{"console", "file", "logstash"}
	c.Console.Format = "text"
	c.File.Path, c.File.Filename, c.File.Format = dir, "agent.log", "json"
	c.File.RotationSize, c.File.BackupCount = 1<<20, 1
	var console bytes.Buffer
	out, err := Open(c, &console)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out.Ignored) != "[logstash]" {
		t.Fatalf("ignored: %v", out.Ignored)
	}
	filter, _ := Filter(c, false)
	log := slog.New(filter(out.Handler)).With("component", "events")
	log.Info("kernel started", "kernel_id", "k-1")
	log.Debug("hidden")
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if s := console.String(); !strings.Contains(s, `msg="kernel started"`) || !strings.Contains(s, "kernel_id=k-1") || strings.Contains(s, "hidden") {
		t.Fatalf("console: %q", s)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &rec); err != nil {
		t.Fatalf("file is not one JSON record: %q: %v", b, err)
	}
	if rec["msg"] != "kernel started" || rec["component"] != "events" || rec["kernel_id"] != "k-1" || rec["level"] != "INFO" {
		t.Fatalf("file record: %v", rec)
	}
	// An unwritable folder is an error naming the section, not a panic.
	c.File.Path = "/proc/nope"
	if _, err := Open(c, &console); err == nil || !strings.Contains(err.Error(), "logging.file") {
		t.Fatalf("unwritable folder: %v", err)
	}
}

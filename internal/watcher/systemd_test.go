package watcher

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// systemd mode drives the unit with systemctl: a stand-in systemctl on
// PATH records the calls and keeps the unit's state, so the watcher's
// verbs, the unit name and is-active's exit status 3 are checked without
// a systemd on the test machine.
func TestSystemdMode(t *testing.T) {
	dir := t.TempDir()
	state, log := filepath.Join(dir, "state"), filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$1 $2" >> "` + log + `"
case "$2" in broken.service) echo "Unit broken.service not found." >&2; exit 5;; esac
case "$1" in
  is-active) s=$(cat "` + state + `" 2>/dev/null || echo inactive); echo "$s"; [ "$s" = active ] || exit 3;;
  start|restart) echo active > "` + state + `";;
  stop) echo inactive > "` + state + `";;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	ctx := context.Background()
	s := Systemd{Unit: "backendai-agent.service"}
	if st := s.Status(ctx); st != "inactive" {
		t.Fatalf("status before start: %q", st)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(ctx); st != "active" {
		t.Fatalf("status after start: %q", st)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(ctx); st != "inactive" {
		t.Fatalf("status after stop: %q", st)
	}
	calls, _ := os.ReadFile(log)
	want := "is-active backendai-agent.service\nstart backendai-agent.service\nis-active backendai-agent.service\nrestart backendai-agent.service\nstop backendai-agent.service\nis-active backendai-agent.service\n"
	if string(calls) != want {
		t.Fatalf("systemctl calls:\n%s\nwant\n%s", calls, want)
	}
	if err := (Systemd{Unit: "broken.service"}).Start(ctx); err == nil || !strings.Contains(err.Error(), "Unit broken.service not found") {
		t.Fatalf("a failing systemctl: %v", err)
	}
}

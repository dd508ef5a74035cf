package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The agent refuses a runner binary that is missing or would not run in
// an image without libc, naming the path.
func TestResolveKrunner(t *testing.T) {
	noenv := func(string) string { return "" }
	missing := filepath.Join(t.TempDir(), "bai-krunner")
	if _, err := ResolveKrunner(missing, noenv); !errors.Is(err, ErrRunnerMissing) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing binary: %v", err)
	}
	dynamic, err := os.Executable() // this test binary links libc (cgo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveKrunner(dynamic, noenv); !errors.Is(err, ErrRunnerMissing) || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("dynamic binary: %v", err)
	}
	script := filepath.Join(t.TempDir(), "x.sh")
	_ = os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	if _, err := ResolveKrunner(script, noenv); !errors.Is(err, ErrRunnerMissing) {
		t.Errorf("a script: %v", err)
	}
	if _, err := ResolveKrunner("", func(k string) string {
		if k == "BAI_KRUNNER_BINARY" {
			return missing
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("$BAI_KRUNNER_BINARY not used: %v", err)
	}
}

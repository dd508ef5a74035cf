package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The watcher in supervisor mode, driven through its HTTP API as the
// manager does: token check, agent status/stop/start/restart, restart
// after a crash, tmpfs and bind mounts with fstab edits, shutdown.
func TestWatcherSupervisor_Integration(t *testing.T) {
	s := newStack(t, "")
	port := testutil.FreePort(t)
	marker := filepath.Join(s.root, "powered-off")
	mnt := filepath.Join(s.root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fstab := filepath.Join(s.root, "fstab")
	if err := os.WriteFile(fstab, []byte("# test fstab\nUUID=abc / ext4 defaults 0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(s.cfg, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "\n[watcher]\nservice-addr = \"127.0.0.1:%d\"\nmode = \"supervisor\"\nshutdown-command = [\"touch\", %q]\ndocker-restart-command = [\"true\"]\nsoft-reset-available = true\n", port, marker)
	f.Close()
	s.etcd.Put(t, "/sorna/"+s.ns+"/config/watcher/token", "s3cret")
	s.etcd.Put(t, "/sorna/"+s.ns+"/volumes/_mount", mnt)

	w := exec.Command(s.bin, "watcher", "-f", s.cfg)
	logf, _ := os.Create(filepath.Join(s.root, "watcher.log"))
	defer logf.Close()
	w.Stdout, w.Stderr = logf, logf
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Process.Signal(syscall.SIGTERM)
		_ = w.Wait()
		for _, n := range []string{"tmp1", "bind1"} {
			_ = syscall.Unmount(filepath.Join(mnt, n), syscall.MNT_DETACH)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(s.root, "watcher.log"))
			t.Logf("watcher log:\n%s", b)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	call := func(method, path, token string, body any) (int, string, http.Header) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if token != "" {
			req.Header.Set("X-BackendAI-Watcher-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error(), nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	type status struct {
		Agent   string `json:"agent-status"`
		Watcher string `json:"watcher-status"`
		PID     int    `json:"agent-pid"`
	}
	getStatus := func() status {
		t.Helper()
		code, body, _ := call("GET", "/", "s3cret", nil)
		var st status
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			return status{}
		}
		return st
	}
	ping := func() bool { return exec.Command(s.bin, "ctl", "--addr", s.rpc, "ping").Run() == nil }
	mustOK := func(method, path string, body any) string {
		t.Helper()
		code, out, _ := call(method, path, "s3cret", body)
		if code != 200 {
			t.Fatalf("%s %s: %d %s", method, path, code, out)
		}
		return out
	}

	testutil.Eventually(t, 60*time.Second, "the supervised agent answers RPC", func() bool {
		return getStatus().Agent == "active" && ping()
	})
	st := getStatus()
	if st.Watcher != "active" || st.PID == 0 {
		t.Fatalf("status %+v", st)
	}
	// The agent tells the manager where its watcher is.
	if got := s.etcd.Get(t, "/sorna/"+s.ns+"/nodes/agents/"+s.id+"/watcher_port"); got != fmt.Sprint(port) {
		t.Fatalf("nodes/agents/%s/watcher_port = %q, want %d", s.id, got, port)
	}

	// Token: wrong or missing is 403, with the Server header either way.
	for _, tok := range []string{"", "insecure", "s3cre", "s3cret!"} {
		code, _, h := call("GET", "/", tok, nil)
		if code != 403 || h.Get("Server") != "BackendAI-AgentWatcher" {
			t.Fatalf("token %q: %d %v", tok, code, h)
		}
	}
	if _, _, h := call("GET", "/", "s3cret", nil); h.Get("Server") != "BackendAI-AgentWatcher" {
		t.Fatalf("server header %v", h)
	}

	// stop, start, restart.
	mustOK("POST", "/agent/stop", nil)
	if st := getStatus(); st.Agent != "inactive" || st.PID != 0 || ping() {
		t.Fatalf("after stop: %+v ping=%v", st, ping())
	}
	mustOK("POST", "/agent/start", nil)
	testutil.Eventually(t, 60*time.Second, "agent back after start", ping)
	pid1 := getStatus().PID
	mustOK("POST", "/agent/restart", nil)
	testutil.Eventually(t, 60*time.Second, "agent back after restart", ping)
	if pid2 := getStatus().PID; pid2 == pid1 || pid2 == 0 {
		t.Fatalf("restart kept pid %d", pid2)
	}

	// A crash: the watcher starts the agent again.
	pid3 := getStatus().PID
	if err := syscall.Kill(pid3, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, "agent restarted after SIGKILL", func() bool {
		st := getStatus()
		return st.Agent == "active" && st.PID != 0 && st.PID != pid3 && ping()
	})

	// Mounts: a tmpfs and a bind, recorded in the test fstab.
	src := filepath.Join(s.root, "bindsrc")
	_ = os.Mkdir(src, 0o755)
	_ = os.WriteFile(filepath.Join(src, "hello"), []byte("hi"), 0o644)
	mustOK("POST", "/mounts", map[string]any{"name": "tmp1", "fs_location": "tmpfs", "fs_type": "tmpfs", "options": "size=1m,nosuid", "edit_fstab": true, "fstab_path": fstab})
	mustOK("POST", "/mounts", map[string]any{"name": "bind1", "fs_location": src, "fs_type": "none", "options": "bind,ro", "edit_fstab": true, "fstab_path": fstab})
	procMounts, _ := os.ReadFile("/proc/mounts")
	for _, want := range []string{"tmpfs " + filepath.Join(mnt, "tmp1") + " tmpfs rw,nosuid", " " + filepath.Join(mnt, "bind1") + " "} {
		if !strings.Contains(string(procMounts), want) {
			t.Fatalf("/proc/mounts lacks %q", want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "bind1", "hello")); err != nil || string(b) != "hi" {
		t.Fatalf("bind mount content: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "bind1", "x"), nil, 0o644); err == nil {
		t.Fatal("ro bind mount is writable")
	}
	var listed []string
	_ = json.Unmarshal([]byte(mustOK("GET", "/mounts", nil)), &listed)
	if fmt.Sprint(listed) != fmt.Sprint([]string{filepath.Join(mnt, "bind1"), filepath.Join(mnt, "tmp1")}) {
		t.Fatalf("GET /mounts = %v", listed)
	}
	tab := mustOK("GET", "/fstab?fstab_path="+fstab, nil)
	for _, want := range []string{"UUID=abc / ext4 defaults 0 1", "tmpfs " + filepath.Join(mnt, "tmp1") + " tmpfs size=1m,nosuid 0 0", src + " " + filepath.Join(mnt, "bind1") + " none bind,ro 0 0"} {
		if !strings.Contains(tab, want) {
			t.Fatalf("fstab lacks %q:\n%s", want, tab)
		}
	}
	// Bad input: a name that leaves the prefix, a non-fstab path, junk.
	for _, body := range []any{
		map[string]any{"name": "../etc", "fs_location": "tmpfs", "fs_type": "tmpfs"},
		map[string]any{"name": "x", "fs_location": "tmpfs", "fs_type": "tmpfs", "edit_fstab": true, "fstab_path": "/etc/passwd"},
		"not an object",
	} {
		if code, out, _ := call("POST", "/mounts", "s3cret", body); code != 400 {
			t.Fatalf("bad mount %v: %d %s", body, code, out)
		}
	}
	if code, _, _ := call("GET", "/fstab?fstab_path=/etc/shadow", "s3cret", nil); code != 400 {
		t.Fatalf("GET /fstab of /etc/shadow: %d", code)
	}
	if _, err := os.Stat(filepath.Join(mnt, "x")); !os.IsNotExist(err) {
		t.Fatalf("a refused mount left its folder: %v", err)
	}
	mustOK("DELETE", "/mounts", map[string]any{"name": "tmp1", "edit_fstab": true, "fstab_path": fstab})
	mustOK("DELETE", "/mounts", map[string]any{"name": "bind1", "edit_fstab": true, "fstab_path": fstab})
	procMounts, _ = os.ReadFile("/proc/mounts")
	if strings.Contains(string(procMounts), mnt+"/") {
		t.Fatalf("still mounted under %s", mnt)
	}
	if b, _ := os.ReadFile(fstab); string(b) != "# test fstab\nUUID=abc / ext4 defaults 0 1\n" {
		t.Fatalf("fstab after unmounts: %q", b)
	}
	if b, _ := os.ReadFile(fstab + ".bak"); !strings.Contains(string(b), "bind1") {
		t.Fatalf("no backup of the previous fstab: %q", b)
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Fatalf("mount points left: %v", ents)
	}

	// soft reset (enabled here) restarts the supervised agent; shutdown
	// stops it and runs the configured command, never a real poweroff.
	mustOK("POST", "/soft-reset", nil)
	testutil.Eventually(t, 60*time.Second, "agent back after soft reset", ping)
	mustOK("POST", "/shutdown", nil)
	if getStatus().Agent != "inactive" {
		t.Fatalf("agent still running after shutdown")
	}
	testutil.Eventually(t, 10*time.Second, "the shutdown command ran", func() bool {
		_, err := os.Stat(marker)
		return err == nil
	})
}

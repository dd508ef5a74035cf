package app_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/volumes"
)

// pyDoVolume publishes do_volume_mount / do_volume_unmount on events_all
// the way the manager does at 26.8 main: the pydantic event's
// model_dump_json() as "payload" of a BroadcastMessagePayload rendered by
// orjson (compact JSON: name, source, payload, metadata).
const pyDoVolume = `
import json, sys, redis
host, port, name, dir_name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
compact = lambda o: json.dumps(o, separators=(",", ":"))
if name == "do_volume_mount":
    fs_type, fs_location, cmd_options = sys.argv[5], sys.argv[6], (sys.argv[7] or None)
    body = {"dir_name": dir_name, "volume_backend_name": "local", "quota_scope_id": "project:9a1f0e3c-0000-4000-8000-000000000001",
            "fs_location": fs_location, "fs_type": fs_type, "cmd_options": cmd_options, "scaling_group": "default",
            "edit_fstab": False, "fstab_path": "/etc/fstab"}
else:
    body = {"dir_name": dir_name, "volume_backend_name": "local", "quota_scope_id": "project:9a1f0e3c-0000-4000-8000-000000000001",
            "scaling_group": "default", "edit_fstab": False, "fstab_path": None}
meta = compact({"request_id": None, "user": None, "triggered_user": None})
msg = compact({"name": name, "source": "i-manager", "payload": compact(body), "metadata": meta})
r = redis.Redis(host=host, port=port, db=4)
n = r.publish("events_all", msg.encode())
print(n)
`

// The agent answers the manager's own do_volume_mount (published by a
// Python peer) by mounting a tmpfs; a mount that hangs on another
// volume is cut at volume-mount-timeout while the tmpfs is mounted
// meanwhile; mount and unmount are idempotent.
func TestVolumeEventsPythonPeer_Integration(t *testing.T) {
	py := managerPeerPython(t)
	// mount(8) wrappers first on the agent's PATH: fs type "baihang"
	// sleeps (a dead NFS server), everything else runs the real tool.
	tools := t.TempDir()
	realMount, err := exec.LookPath("mount")
	if err != nil {
		testutil.Missing(t, "mount: %v", err)
	}
	script := "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = baihang ] && exec sleep 300; done\nexec " + realMount + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(tools, "mount"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newStackWith(t, "cohabiting-storage-proxy = false\nvolume-mount-timeout = 12", stackOpts{
		portRange: [2]int{28540, 28579}, env: []string{"PATH=" + tools + ":" + os.Getenv("PATH")},
	})
	tmpMP, hangMP := filepath.Join(s.vfroot, "tmpvol"), filepath.Join(s.vfroot, "hangvol")
	t.Cleanup(func() {
		for ok, _ := volumes.IsMounted("", tmpMP); ok; ok, _ = volumes.IsMounted("", tmpMP) {
			if err := unix.Unmount(tmpMP, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
		}
	})
	s.start()
	ctx := context.Background()
	sub := s.rdb.Subscribe(ctx, "events_all")
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "agent subscribed", func() bool {
		n, _ := s.rdb.PubSubNumSub(ctx, "events_all").Result()
		return n["events_all"] >= 2
	})
	host, port, _ := strings.Cut(s.redis.Addr, ":")
	publish := func(args ...string) {
		t.Helper()
		out, err := exec.Command(py, append([]string{"-c", pyDoVolume, host, port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("python peer: %v: %s", err, out)
		}
	}
	type answer struct {
		name string
		p    map[string]any
	}
	next := func(timeout time.Duration) answer {
		t.Helper()
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
			msg, err := sub.ReceiveTimeout(ctx, time.Until(deadline))
			if err != nil {
				break
			}
			m, ok := msg.(*redis.Message)
			if !ok {
				continue
			}
			var b struct{ Name, Payload string }
			if json.Unmarshal([]byte(m.Payload), &b) != nil || !strings.HasPrefix(b.Name, "volume_") {
				continue
			}
			var p map[string]any
			if err := json.Unmarshal([]byte(b.Payload), &p); err != nil {
				t.Fatalf("%s payload: %s", b.Name, b.Payload)
			}
			return answer{b.Name, p}
		}
		t.Fatalf("no volume_* broadcast within %s", timeout)
		return answer{}
	}
	expect := func(a answer, name, mp string, ok bool) {
		t.Helper()
		if a.name != name || a.p["mount_path"] != mp || (a.p["err_msg"] == nil) != ok ||
			a.p["node_id"] != s.id || a.p["node_type"] != "agent" || a.p["quota_scope_id"] != "project:9a1f0e3c-0000-4000-8000-000000000001" {
			t.Fatalf("got %s %v; want %s for %s (success %v)", a.name, a.p, name, mp, ok)
		}
	}

	publish("do_volume_mount", "hangvol", "baihang", "nfs.example:/export", "")
	publish("do_volume_mount", "tmpvol", "tmpfs", "baitmp", "size=1m")
	// The tmpfs, asked second, answers first: a mount queued behind the
	// hung one would answer only after the hung one's 12-s deadline and
	// its failure. (Order, not elapsed time: each publish starts a
	// Python process, seconds on a loaded machine; the deadline leaves
	// the second publish that long to arrive.)
	expect(next(testutil.Slow(10*time.Second)), "volume_mounted", tmpMP, true)
	if ok, _ := volumes.IsMounted("", tmpMP); !ok {
		t.Fatal("tmpfs not in mountinfo")
	}
	a := next(testutil.Slow(25 * time.Second))
	expect(a, "volume_mounted", hangMP, false)
	if msg, _ := a.p["err_msg"].(string); !strings.Contains(msg, "timed out") {
		t.Fatalf("hung mount err_msg %q", msg)
	}
	// Mounting again is a success that changes nothing (upstream:
	// "already mounted"); unmount twice, both successes.
	publish("do_volume_mount", "tmpvol", "tmpfs", "baitmp", "size=1m")
	expect(next(testutil.Slow(10*time.Second)), "volume_mounted", tmpMP, true)
	for range 2 {
		publish("do_volume_unmount", "tmpvol")
		expect(next(testutil.Slow(10*time.Second)), "volume_unmounted", tmpMP, true)
		if ok, _ := volumes.IsMounted("", tmpMP); ok {
			t.Fatal("still mounted after do_volume_unmount")
		}
	}
}

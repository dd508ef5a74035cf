package zmq_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/rpc/callosum"
	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func rssMiB(t testing.TB, pid int) float64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// A burst of oversized messages (16 MiB bodies, over the inbound limit)
// each gets callosum's error reply, the agent keeps answering, and its
// resident memory returns to within 2x idle within a minute.
func TestHostileBurstMemory_Integration(t *testing.T) {
	testutil.RequireDocker(t)
	bin := testutil.AgentBinary(t)
	dir := t.TempDir()
	port := testutil.FreePort(t)
	cfg := filepath.Join(dir, "agent.toml")
	doc := fmt.Sprintf("[agent]\nbackend=\"docker\"\nid=\"i-burst-%s\"\nrpc-listen-addr=\"127.0.0.1:%d\"\ncontrol-plane=\"none\"\ninternal-addr=\"127.0.0.1:0\"\n[container]\nport-range=[29100,29199]\nscratch-root=%q\n[resource]\nreserved-cpu=0\nreserved-mem=\"64M\"\n", uuid.NewString()[:8], port, filepath.Join(dir, "scratch"))
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "start-server", "-f", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	testutil.Eventually(t, 30*time.Second, "agent answers PING", func() bool {
		c, err := client.Dial(addr, 500*time.Millisecond, nil)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	time.Sleep(2 * time.Second) // settle: the idle figure is the baseline
	idle := rssMiB(t, cmd.Process.Pid)

	sock, err := zmq4.NewSocket(zmq4.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	_ = sock.SetLinger(0)
	if err := sock.Connect(addr); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 16<<20)
	const burst = 20
	for i := 0; i < burst; i++ {
		h, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: "upload_file", Okey: []byte{}, Seq: int64(i)})
		if _, err := sock.SendMessage("UPPER", h, big); err != nil {
			t.Fatal(err)
		}
	}
	_ = sock.SetRcvtimeo(30 * time.Second)
	for i := 0; i < burst; i++ {
		frames, err := sock.RecvMessageBytes(0)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		rh, _, err := callosum.DecodeHeader(frames[len(frames)-2])
		if err != nil || rh.Type != callosum.TypeError {
			t.Fatalf("reply %d: %+v %v", i, rh, err)
		}
	}
	peak := rssMiB(t, cmd.Process.Pid)
	c, err := client.Dial(addr, 5*time.Second, nil)
	if err != nil {
		t.Fatalf("agent stopped answering after the burst: %v", err)
	}
	v, err := c.Call(context.Background(), "ping", []any{"ok"}, nil)
	c.Close()
	if err != nil || v != "ok" {
		t.Fatalf("ping after the burst: %v %v", v, err)
	}
	var now float64
	deadline := time.Now().Add(testutil.Slow(60 * time.Second))
	for {
		now = rssMiB(t, cmd.Process.Pid)
		if now <= 2*idle || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("RSS idle %.1f MiB, after the burst %.1f MiB, then %.1f MiB", idle, peak, now)
	if now > 2*idle {
		t.Fatalf("RSS %.1f MiB a minute after the burst, idle was %.1f MiB", now, idle)
	}

	// A frame far over the limit (here 64 MiB, the limit being 10 MiB) is
	// cut by libzmq before it is read whole: no reply, the connection
	// goes, and the agent still serves everyone else.
	huge, err := zmq4.NewSocket(zmq4.DEALER)
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	_ = huge.SetLinger(0)
	_ = huge.SetRcvtimeo(3 * time.Second)
	if err := huge.Connect(addr); err != nil {
		t.Fatal(err)
	}
	h, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: "upload_file", Okey: []byte{}, Seq: 1})
	if _, err := huge.SendMessage("UPPER", h, make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if frames, err := huge.RecvMessageBytes(0); err == nil {
		t.Fatalf("a 64 MiB frame was read and answered (%d frames): libzmq did not cut it", len(frames))
	}
	c, err = client.Dial(addr, 5*time.Second, nil)
	if err != nil {
		t.Fatalf("agent stopped answering after a huge frame: %v", err)
	}
	defer c.Close()
	if v, err := c.Call(context.Background(), "ping", []any{"ok"}, nil); err != nil || v != "ok" {
		t.Fatalf("ping after a huge frame: %v %v", v, err)
	}
}

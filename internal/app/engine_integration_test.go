package app_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// The agent runs on an engine the test owns; the engine is stopped with
// SIGTERM (no live-restore: it stops every container) or killed with
// SIGKILL (it cleans its containers when it comes back) and started again.
// While it is down the agent keeps serving RPC and heartbeating and
// creations fail with a clear error; when it is back, the kernels whose
// containers it stopped get kernel_terminated (anomaly-detected) within
// a sync period, everything is released, and creation works again.
func TestEngineRestart_Integration(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) { engineRestart(t, sig) })
	}
}

func engineRestart(t *testing.T, sig syscall.Signal) {
	eng := testutil.StartEngine(t, false)
	img := eng.ImportTestImage()
	s := newStack(t, "")
	s.env = append(s.env, "DOCKER_HOST="+eng.Host)
	s.start()
	k1, k2 := s.createKernel(img), s.createKernel(img)
	s.readEvents(30*time.Second, func(evs []event) bool {
		n := 0
		for _, e := range evs {
			if e.Name == "kernel_started" {
				n++
			}
		}
		return n >= 2
	})

	eng.Stop(sig)
	out, err := exec.Command(s.bin, "ctl", "--addr", s.rpc, "create", "--image", img, "--cpu", "1", "--mem", "64m").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "container engine unavailable") {
		t.Fatalf("create with the engine down: %v\n%s", err, out)
	}
	s.ctl("ping")
	// health_v2 reports the engine as unhealthy (and the rest healthy).
	checkOnlyDockerUnhealthy(t, s)
	// Events seen from here on, across reads (each read consumes).
	var all []event
	all = append(all, s.readEvents(20*time.Second, func(evs []event) bool { return countName(evs, "agent_heartbeat") >= 3 })...)

	eng.Start()
	terminated := func(evs []event) bool {
		both := append(append([]event(nil), all...), evs...)
		return strings.Contains(strings.Join(kernelEvents(both, k1), ","), "kernel_terminated") &&
			strings.Contains(strings.Join(kernelEvents(both, k2), ","), "kernel_terminated")
	}
	if !terminated(nil) {
		all = append(all, s.readEvents(60*time.Second, terminated)...)
	}
	for _, e := range all {
		if e.Name == "kernel_terminated" && e.Payload["reason"] != "anomaly-detected" {
			t.Errorf("kernel_terminated %v, want reason anomaly-detected", e.Payload)
		}
	}
	var ls []map[string]any
	if err := json.Unmarshal([]byte(s.ctl("--json", "ls")), &ls); err != nil || len(ls) != 0 {
		t.Fatalf("kernels after the restart: %v %v", ls, err)
	}
	be := eng.Backend()
	if left, err := be.List(context.Background(), map[string]string{"ai.backend.owner": s.id}); err != nil || len(left) != 0 {
		t.Fatalf("containers left in the engine: %d %v", len(left), err)
	}
	k3 := s.createKernel(img)
	s.ctl("destroy", k3)
}

// A hung engine (it accepts connections and never answers, as a
// deadlocked dockerd does; here the test's engine stopped with SIGSTOP):
// the agent keeps answering RPC and heartbeating, reports the engine as
// unhealthy, and a creation fails with an error instead of hanging; the
// running kernel is not declared dead. When the engine answers again the
// kernel is still there and creation works.
func TestEngineHung_Integration(t *testing.T) {
	eng := testutil.StartEngine(t, false)
	img := eng.ImportTestImage()
	s := newStack(t, "")
	s.env = append(s.env, "DOCKER_HOST="+eng.Host)
	s.start()
	k1 := s.createKernel(img)
	s.readEvents(30*time.Second, func(evs []event) bool { return countName(evs, "kernel_started") >= 1 })

	eng.Freeze()
	t0 := time.Now()
	out, err := exec.Command(s.bin, "ctl", "--addr", s.rpc, "create", "--image", img, "--cpu", "1", "--mem", "64m").CombinedOutput()
	t.Logf("create with the engine hung: %v after %s\n%s", err, time.Since(t0).Round(time.Millisecond), out)
	if err == nil {
		t.Fatalf("create succeeded with the engine hung:\n%s", out)
	}
	if time.Since(t0) > 45*time.Second || !strings.Contains(string(out), "did not answer") && !strings.Contains(string(out), "container engine unavailable") {
		t.Fatalf("create with the engine hung: not failed within its deadline with a clear error")
	}
	s.ctl("ping")
	var all []event
	all = append(all, s.readEvents(20*time.Second, func(evs []event) bool { return countName(evs, "agent_heartbeat") >= 3 })...)
	// The outage is known now: a creation fails at once, taking nothing.
	t0 = time.Now()
	out, err = exec.Command(s.bin, "ctl", "--addr", s.rpc, "create", "--image", img, "--cpu", "1", "--mem", "64m").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "container engine unavailable since") || time.Since(t0) > 5*time.Second {
		t.Fatalf("create during a known outage: %v after %s\n%s", err, time.Since(t0), out)
	}
	checkOnlyDockerUnhealthy(t, s)

	eng.Thaw()
	all = append(all, s.readEvents(10*time.Second, func(evs []event) bool { return countName(evs, "agent_heartbeat") >= 2 })...)
	if got := kernelEvents(all, k1); strings.Contains(strings.Join(got, ","), "kernel_terminated") {
		t.Fatalf("the running kernel was declared dead while the engine hung: %v", got)
	}
	var ls []map[string]any
	if err := json.Unmarshal([]byte(s.ctl("--json", "ls")), &ls); err != nil || len(ls) != 1 || ls[0]["state"] != "running" {
		t.Fatalf("kernels after the engine came back: %v %v", ls, err)
	}
	k2 := s.createKernel(img)
	s.ctl("destroy", k2)
	s.ctl("destroy", k1)
}

// With live-restore the kernels keep running through the engine's
// restart and stay adopted.
func TestEngineLiveRestore_Integration(t *testing.T) {
	eng := testutil.StartEngine(t, true)
	img := eng.ImportTestImage()
	s := newStack(t, "")
	s.env = append(s.env, "DOCKER_HOST="+eng.Host)
	s.start()
	k := s.createKernel(img)
	eng.Stop(syscall.SIGTERM)
	eng.Start()
	// Two sync periods (2 s each) and some heartbeats later, nothing ended.
	evs := s.readEvents(30*time.Second, func(evs []event) bool { return countName(evs, "agent_heartbeat") >= 8 })
	if got := kernelEvents(evs, k); strings.Contains(strings.Join(got, ","), "kernel_terminated") {
		t.Fatalf("kernel terminated through a live-restore restart: %v", got)
	}
	var ls []map[string]any
	if err := json.Unmarshal([]byte(s.ctl("--json", "ls")), &ls); err != nil || len(ls) != 1 || ls[0]["state"] != "running" {
		t.Fatalf("kernels after the restart: %v %v", ls, err)
	}
	s.ctl("destroy", k)
}

// checkOnlyDockerUnhealthy asks health_v2 and expects the docker check,
// and only it, to be unhealthy.
func checkOnlyDockerUnhealthy(t *testing.T, s *stack) {
	t.Helper()
	c, err := client.Dial("tcp://"+s.rpc, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Call(context.Background(), "health_v2", nil, map[string]any{"req": map[string]any{}})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	hm, _ := h.(msgpack.Map)
	conn, _ := hm.Get("connectivity")
	checks, _ := conn.(msgpack.Map).Get("connectivity_checks")
	for _, ck := range checks.([]any) {
		m := ck.(msgpack.Map)
		id, _ := m.Get("component_id")
		ok, _ := m.Get("is_healthy")
		if (id == "docker") == (ok == true) {
			t.Errorf("health check %v healthy=%v with the engine down", id, ok)
		}
	}
}

package app_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// plain turns msgpack maps into Go maps, for reading RPC results.
func plain(v any) any {
	switch x := v.(type) {
	case msgpack.Map:
		m := make(map[string]any, len(x))
		for _, kv := range x {
			m[fmt.Sprint(kv.Key)] = plain(kv.Val)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = plain(x[i])
		}
		return out
	}
	return v
}

// multiAgent is one of the agents of a multi-agent process.
type multiAgent struct {
	id, rpc string
}

// call runs one RPC on the agent with its agent_id, as the manager's
// calls carry it.
func (m multiAgent) call(t testing.TB, timeout time.Duration, agentID, meth string, args ...any) (any, error) {
	t.Helper()
	c, err := client.Dial("tcp://"+m.rpc, 5*time.Second, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Call(ctx, meth, args, map[string]any{"agent_id": agentID})
}

// create sends create_kernels for one kernel of cpu cores.
func (m multiAgent) create(t testing.TB, img string, cpu int) (kid, sid, container string, err error) {
	t.Helper()
	sid, kid = uuid.NewString(), uuid.NewString()
	cfg := map[string]any{
		"image": map[string]any{"canonical": img, "is_local": true, "auto_pull": "none",
			"registry": map[string]any{"name": "", "url": ""}, "labels": map[string]any{}},
		"kernel_id": kid, "session_id": sid, "owner_user_id": "f38dea23-50fa-42a0-b5ae-338f5f4693f4",
		"network_id": sid, "session_type": "interactive", "cluster_mode": "single-node", "cluster_role": "main",
		"cluster_idx": 1, "local_rank": 0,
		"resource_slots": map[string]any{"cpu": strconv.Itoa(cpu), "mem": "67108864"},
		"resource_opts":  map[string]any{"shmem": 8 << 20},
		"environ":        map[string]any{"BACKENDAI_SESSION_ID": sid},
		"mounts":         []any{}, "preopen_ports": []any{},
	}
	cluster := map[string]any{"mode": "single-node", "size": 1, "replicas": map[string]any{"main": 1}, "network_config": map[string]any{"mode": "bridge"}}
	v, err := m.call(t, testutil.Slow(90*time.Second), m.id, "create_kernels", sid, []any{kid}, []any{cfg}, cluster, map[string]any{})
	if err != nil {
		return kid, sid, "", err
	}
	l, _ := plain(v).([]any)
	if len(l) != 1 {
		t.Fatalf("create_kernels on %s answered %#v", m.id, v)
	}
	r, _ := l[0].(map[string]any)
	return kid, sid, fmt.Sprint(r["container_id"]), nil
}

// status is the agent's bai_status: its kernels' ids and its view of the
// cpu slot.
func (m multiAgent) status(t testing.TB) (kernels []string, cpuAvail, cpuUsed string) {
	t.Helper()
	v, err := m.call(t, 10*time.Second, m.id, "bai_status")
	if err != nil {
		t.Fatalf("bai_status on %s: %v", m.id, err)
	}
	st, _ := plain(v).(map[string]any)
	if st["agent_id"] != m.id {
		t.Fatalf("bai_status on %s answered for %v", m.id, st["agent_id"])
	}
	ks, _ := st["kernels"].([]any)
	for _, k := range ks {
		kernels = append(kernels, fmt.Sprint(k.(map[string]any)["id"]))
	}
	slots, _ := st["slots"].(map[string]any)
	cpu, _ := slots["cpu"].(map[string]any)
	return kernels, fmt.Sprint(cpu["available"]), fmt.Sprint(cpu["used"])
}

// Two agents of one process ([[agents]], allocation-mode = "shared"):
// each answers RPC at its own address with its own agent_id, heartbeats
// under its id, owns its kernels (container label, scratch sub-tree),
// and the node's slots are one pool: a kernel one agent admits takes
// slots from the other's view, so that together they cannot
// over-allocate. After a restart each kernel is adopted by its own agent.
func TestMultiAgentShared_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	rpcB := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	var ids [2]string
	base := "i-ma-" + uuid.NewString()[:8]
	ids[0], ids[1] = base+"-a", base+"-b"
	tail := fmt.Sprintf("[[agents]]\n[agents.agent]\nid = %q\n[[agents]]\n[agents.agent]\nid = %q\nrpc-listen-addr = %q\n", ids[0], ids[1], rpcB)
	s := newStackWith(t, "", stackOpts{portRange: [2]int{28580, 28619}, tail: tail})
	t.Cleanup(func() {
		for _, id := range ids {
			testutil.RemoveContainers(t, map[string]string{"ai.backend.owner": id})
		}
	})
	a, b := multiAgent{id: ids[0], rpc: s.rpc}, multiAgent{id: ids[1], rpc: rpcB}
	s.start()
	testutil.Eventually(t, testutil.Slow(30*time.Second), "the second agent answers RPC", func() bool {
		return exec.Command(s.bin, "ctl", "--addr", rpcB, "ping").Run() == nil
	})

	// A call for the other agent is refused: each listener serves its own.
	if _, err := a.call(t, 10*time.Second, ids[1], "ping", "x"); err == nil || !strings.Contains(err.Error(), "AgentIdNotFoundError") && !strings.Contains(err.Error(), "not served here") {
		t.Fatalf("ping on %s with agent_id %s: %v, want AgentIdNotFoundError", ids[0], ids[1], err)
	}

	// Both heartbeat under their own ids, each with the whole node's slots.
	cpuOf := func(e event) string {
		info, _ := e.Payload["agent_info"].(map[string]any)
		slots, _ := info["available_resource_slots"].([]any)
		for _, sl := range slots {
			m, _ := sl.(map[string]any)
			if m["resource_type"] == "cpu" {
				return fmt.Sprint(m["quantity"])
			}
		}
		return ""
	}
	hbCPU := map[string]string{}
	s.readEvents(testutil.Slow(30*time.Second), func(evs []event) bool {
		for _, e := range evs {
			if e.Name == "agent_heartbeat" {
				hbCPU[e.Source] = cpuOf(e)
			}
		}
		return hbCPU[ids[0]] != "" && hbCPU[ids[1]] != ""
	})
	if len(hbCPU) != 2 || hbCPU[ids[0]] != hbCPU[ids[1]] {
		t.Fatalf("heartbeats' cpu slots by source: %v, want the same from %s and %s only", hbCPU, ids[0], ids[1])
	}
	for _, id := range ids {
		if v := s.etcd.Get(t, "/sorna/"+s.ns+"/nodes/agents/"+id); v != "running" {
			t.Fatalf("etcd nodes/agents/%s = %q", id, v)
		}
	}
	capDec, err := decimal.NewFromString(hbCPU[ids[0]])
	if err != nil {
		t.Fatalf("heartbeat cpu %q: %v", hbCPU[ids[0]], err)
	}
	capacity := int(capDec.IntPart())
	if capacity < 2 {
		t.Fatalf("the node offers %d cpu slot(s); the test needs 2 (one kernel per agent)", capacity)
	}

	// A takes all cores but one, B the last one: the node is full for both.
	k1, sid1, c1, err := a.create(t, img, capacity-1)
	if err != nil {
		t.Fatalf("create on %s: %v", a.id, err)
	}
	k2, sid2, c2, err := b.create(t, img, 1)
	if err != nil {
		t.Fatalf("create on %s: %v", b.id, err)
	}
	for _, ag := range []multiAgent{a, b} {
		_, avail, used := ag.status(t)
		if used != strconv.Itoa(capacity) || avail != strconv.Itoa(capacity) {
			t.Fatalf("%s sees cpu used %s of %s, want %d of %d (both agents' kernels)", ag.id, used, avail, capacity, capacity)
		}
		if _, _, _, err := ag.create(t, img, 1); err == nil {
			t.Fatalf("%s admitted a kernel beyond the node's %d cores", ag.id, capacity)
		} else {
			var re *client.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Name+re.Repr, "InsufficientResource") {
				t.Fatalf("over-allocation on %s: %v, want InsufficientResource", ag.id, err)
			}
		}
	}
	// Each kernel is its agent's: container label and scratch sub-tree.
	for _, c := range []struct{ kid, container, owner string }{{k1, c1, ids[0]}, {k2, c2, ids[1]}} {
		out, err := exec.Command("docker", "inspect", "-f", `{{index .Config.Labels "ai.backend.owner"}}`, c.container).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.owner {
			t.Fatalf("kernel %s's container owner label %q (%v), want %s", c.kid, out, err, c.owner)
		}
		if _, err := os.Stat(filepath.Join(s.root, "scratch", c.owner, c.kid)); err != nil {
			t.Fatalf("kernel %s's scratch not under its agent's sub-tree: %v", c.kid, err)
		}
	}

	// Restart: each agent adopts its own kernel, and the shared
	// allocator holds both again.
	s.stop()
	s.start()
	testutil.Eventually(t, testutil.Slow(30*time.Second), "the second agent answers RPC again", func() bool {
		return exec.Command(s.bin, "ctl", "--addr", rpcB, "ping").Run() == nil
	})
	for _, c := range []struct {
		ag  multiAgent
		kid string
	}{{a, k1}, {b, k2}} {
		ks, _, used := c.ag.status(t)
		if len(ks) != 1 || ks[0] != c.kid {
			t.Fatalf("after the restart %s has kernels %v, want only %s", c.ag.id, ks, c.kid)
		}
		if used != strconv.Itoa(capacity) {
			t.Fatalf("after the restart %s sees cpu used %s, want %d", c.ag.id, used, capacity)
		}
	}

	// Destroy through each owner; the freed core is admitted again.
	if _, err := b.call(t, testutil.Slow(60*time.Second), b.id, "destroy_kernel", k2, sid2, "user-requested"); err != nil {
		t.Fatalf("destroy_kernel on %s: %v", b.id, err)
	}
	k3, sid3, _, err := a.create(t, img, 1)
	if err != nil {
		t.Fatalf("%s cannot use the core %s freed: %v", a.id, b.id, err)
	}
	for _, k := range [][2]string{{k1, sid1}, {k3, sid3}} {
		if _, err := a.call(t, testutil.Slow(60*time.Second), a.id, "destroy_kernel", k[0], k[1], "user-requested"); err != nil {
			t.Fatalf("destroy_kernel %s on %s: %v", k, a.id, err)
		}
	}
	term := map[string]string{}
	s.readEvents(testutil.Slow(30*time.Second), func(evs []event) bool {
		for _, e := range evs {
			if e.Name == "kernel_terminated" {
				term[fmt.Sprint(e.Payload["kernel_id"])] = e.Source
			}
		}
		return len(term) >= 3
	})
	if term[k1] != ids[0] || term[k2] != ids[1] || term[k3] != ids[0] {
		t.Fatalf("kernel_terminated sources %v, want %s and %s from %s, %s from %s", term, k1, k3, ids[0], k2, ids[1])
	}
	for _, ag := range []multiAgent{a, b} {
		if ks, _, used := ag.status(t); len(ks) != 0 || used != "0" {
			t.Fatalf("after the destroys %s has kernels %v and cpu used %s", ag.id, ks, used)
		}
	}

	// An agent that cannot start (its RPC port taken) fails the process,
	// and the error names its entry.
	s.stop()
	ln, err := net.Listen("tcp", rpcB)
	if err != nil {
		t.Fatalf("hold %s: %v", rpcB, err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Slow(60*time.Second))
	defer cancel()
	out, err := exec.CommandContext(ctx, s.bin, "start-server", "-f", s.cfg).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("start-server with agent %s's port taken: %v (context %v)\n%s", ids[1], err, ctx.Err(), out)
	}
	if want := fmt.Sprintf("[[agents]] entry 1 (agent %s)", ids[1]); !strings.Contains(string(out), want) {
		t.Fatalf("start-up failure does not name %q:\n%s", want, out)
	}
}

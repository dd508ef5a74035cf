package discovery

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/etcdconfig"
	"github.com/bai-agent/bai-agent/internal/events"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// keys lists the raw etcd keys and values under prefix, read with etcdctl
// (not the agent's client).
func keys(t *testing.T, e *testutil.Etcd, prefix string) map[string]string {
	t.Helper()
	out := strings.Split(strings.TrimRight(e.Ctl(t, "get", "--prefix", prefix), "\n"), "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(out); i += 2 {
		m[out[i]] = out[i+1]
	}
	return m
}

// The agent's entry in upstream's layout, as the manager's
// ETCDServiceDiscovery reads it (get_prefix under
// ai/backend/service_discovery, then ServiceMetadata.from_dict: pydantic
// turns "6003" into the int port and the time strings into floats;
// restated here in Go since python3-etcd3 is not installed), refreshed by
// heartbeats, and removed by Close; stale entries of any group swept.
func TestEtcdRegistration_Integration(t *testing.T) {
	e := testutil.StartEtcd(t)
	ctx := context.Background()
	c, err := etcdconfig.Dial(ctx, etcdconfig.Options{Endpoints: []string{e.Addr}, Namespace: "sd"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := "5f0c8e2a-1b7e-5d7c-9a4e-3d2f1c0b9a87"
	reg := time.Now().Add(-time.Minute)
	r := Start(Options{
		Store: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Interval: 100 * time.Millisecond,
		Service: &events.Discovery{ID: id, DisplayName: "agent-i-sd", Version: "26.1.0", Address: "10.0.0.5:6003", Port: 6003, Registered: reg},
	})
	base := "/sorna/sd/ai/backend/service_discovery/agent/" + id + "/"
	var first map[string]string
	testutil.Eventually(t, 10*time.Second, "registration", func() bool {
		first = keys(t, e, base)
		return len(first) == 10
	})
	want := map[string]string{
		"id": id, "display_name": "agent-i-sd", "service_group": "agent", "version": "26.1.0",
		"endpoint/address": "10.0.0.5:6003", "endpoint/port": "6003", "endpoint/protocol": "http",
		"endpoint/prometheus_address": "10.0.0.5:6003",
	}
	for k, v := range want {
		if first[base+k] != v {
			t.Fatalf("%s = %q, want %q (all: %v)", k, first[base+k], v, first)
		}
	}
	// The manager's read: get_prefix of the group, then from_dict.
	groups, err := c.GetPrefix(ctx, Prefix)
	if err != nil {
		t.Fatal(err)
	}
	svc := groups["agent"].(map[string]any)[id].(map[string]any)
	ep := svc["endpoint"].(map[string]any)
	if port, err := strconv.Atoi(ep["port"].(string)); err != nil || port != 6003 {
		t.Fatalf("port %v", ep["port"])
	}
	hs := svc["health_status"].(map[string]any)
	regStr := hs["registration_time"].(string)
	if f, err := strconv.ParseFloat(regStr, 64); err != nil || f != unix(reg) {
		t.Fatalf("registration_time %q", regStr)
	}
	// Python renders these floats the same way (str(float(s)) == s).
	py, err := exec.LookPath("python3")
	if err != nil {
		testutil.Missing(t, "python3")
	}
	{
		out, err := exec.Command(py, "-c", "import sys; v=sys.argv[1:]; print(all(str(float(s))==s for s in v))", regStr, hs["last_heartbeat"].(string)).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "True" {
			t.Fatalf("python renders %v differently: %s %v", hs, out, err)
		}
	}
	// Refreshed: last_heartbeat moves, registration_time stays.
	testutil.Eventually(t, 10*time.Second, "heartbeat", func() bool {
		now := keys(t, e, base)
		return now[base+"health_status/last_heartbeat"] != first[base+"health_status/last_heartbeat"] &&
			now[base+"health_status/registration_time"] == first[base+"health_status/registration_time"]
	})
	// Sweep: a stale manager entry goes, a fresh one and ours stay.
	stale := "/sorna/sd/ai/backend/service_discovery/manager/m-old/"
	fresh := "/sorna/sd/ai/backend/service_discovery/manager/m-new/"
	e.Put(t, stale+"health_status/last_heartbeat", pyFloat(float64(time.Now().Add(-10*time.Minute).Unix())))
	e.Put(t, stale+"id", "m-old")
	e.Put(t, fresh+"health_status/last_heartbeat", pyFloat(unix(time.Now())))
	if err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if len(keys(t, e, stale)) != 0 || len(keys(t, e, fresh)) != 1 || len(keys(t, e, base)) != 10 {
		t.Fatalf("after sweep: stale %v fresh %v ours %d", keys(t, e, stale), keys(t, e, fresh), len(keys(t, e, base)))
	}
	r.Close()
	if left := keys(t, e, base); len(left) != 0 {
		t.Fatalf("left after Close: %v", left)
	}
	if len(keys(t, e, fresh)) != 1 {
		t.Fatal("Close removed another service's entry")
	}
}

func TestValuesPythonFloats(t *testing.T) {
	d := &events.Discovery{ID: "x", Registered: time.Unix(1718000000, 0)}
	v := Values(d, time.Unix(1718000000, 250_000_000))
	if got := v[ServiceKey("agent", "x")+"/health_status/registration_time"]; got != "1718000000.0" {
		t.Fatalf("registration_time %q", got)
	}
	if got := v[ServiceKey("agent", "x")+"/health_status/last_heartbeat"]; got != "1718000000.25" {
		t.Fatalf("last_heartbeat %q", got)
	}
	if _, ok := v[ServiceKey("agent", "x")+"/labels"]; ok {
		t.Fatal("empty labels written")
	}
}

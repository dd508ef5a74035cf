package app_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/telemetry/otlptest"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The agent binary with [otel] enabled and etcd service discovery: a
// create_kernels over RPC arrives at an OTLP/HTTP collector as an RPC
// span with the creation's step spans under it, and the agent's entry is
// in etcd in upstream's layout while it runs and gone once it stops.
func TestTelemetryAndEtcdDiscovery_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	rcv := otlptest.Start(t)
	s := newStack(t, "")
	f, err := os.OpenFile(s.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "[otel]\nenabled = true\nendpoint = %q\n[service-discovery]\ntype = \"etcd\"\n", rcv.URL)
	f.Close()
	s.start()
	prefix := "/sorna/" + s.ns + "/ai/backend/service_discovery/agent/"
	entry := func() map[string]string {
		out := strings.Split(strings.TrimRight(s.etcd.Ctl(t, "get", "--prefix", prefix), "\n"), "\n")
		m := map[string]string{}
		for i := 0; i+1 < len(out); i += 2 {
			m[strings.TrimPrefix(out[i], prefix)] = out[i+1]
		}
		return m
	}
	var reg map[string]string
	testutil.Eventually(t, 20*time.Second, "the agent's service-discovery entry in etcd", func() bool {
		reg = entry()
		return len(reg) >= 8
	})
	found := false
	for k, v := range reg {
		if strings.HasSuffix(k, "/display_name") && v == "agent-"+s.id {
			found = true
		}
	}
	if !found {
		t.Fatalf("no display_name agent-%s in %v", s.id, reg)
	}
	kid := s.createKernel(img)
	rpc := rcv.Wait(t, 30*time.Second, "rpc.create_kernels")
	if rpc.Attr("backendai.agent.id") != s.id {
		t.Fatalf("rpc span attributes: %v", rpc.Attributes)
	}
	create := rcv.Wait(t, 30*time.Second, "kernel.create")
	if string(create.ParentSpanId) != string(rpc.SpanId) || string(create.TraceId) != string(rpc.TraceId) {
		t.Fatal("kernel.create is not under the create_kernels RPC span")
	}
	step := rcv.Wait(t, 30*time.Second, "kernel.create.container")
	if string(step.ParentSpanId) != string(create.SpanId) {
		t.Fatal("the container step is not under kernel.create")
	}
	s.ctl("destroy", kid)
	s.stop()
	if left := entry(); len(left) != 0 {
		t.Fatalf("service-discovery entry left after the agent stopped: %v", left)
	}
}

package zmq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// directJupyter is run with docker exec inside a kernel's container: it
// finds the ipykernel the runner started (its connection file from its
// command line), connects to it with jupyter_client, runs "1" N times,
// each to its result and the kernel's idle status, and prints the
// latencies in seconds as a JSON list.
const directJupyter = `
import json, os, sys, time
from jupyter_client import BlockingKernelClient
cf = None
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    try:
        argv = open('/proc/%s/cmdline' % pid, 'rb').read().split(b'\0')
    except OSError:
        continue
    if b'ipykernel_launcher' in b' '.join(argv) and b'-f' in argv:
        cf = argv[argv.index(b'-f') + 1].decode()
if cf is None:
    sys.exit('no ipykernel running')
kc = BlockingKernelClient()
kc.load_connection_file(cf)
kc.start_channels()
kc.wait_for_ready(timeout=30)
lat = []
for _ in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    reply = kc.execute_interactive('1', timeout=30, output_hook=lambda msg: None)
    lat.append(time.perf_counter() - t0)
    if reply['content']['status'] != 'ok':
        sys.exit('execute: %r' % reply['content'])
kc.stop_channels()
print(json.dumps(lat))
`

func quantile(d []time.Duration, q float64) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*q)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkExecuteJupyter measures, in one run, a trivial query ("1") in
// a python kernel whose image has ipykernel (testutil.JupyterImage):
// through the manager's path (execute over Callosum, agent, runner,
// ipykernel), and directly (jupyter_client inside the same container,
// talking to the same ipykernel, started with docker exec) — b.N round
// trips each, median and p99; the helper path's median (the python image
// without ipykernel); and the time to the first result, create_kernels
// until the first execute's result, against docker run IMAGE python3 -c
// 'print(1)' of the same image.
func BenchmarkExecuteJupyter(b *testing.B) {
	addr, _, _ := startAgent(b, nil)
	jimg := testutil.JupyterImage(b)
	pyimg := testutil.PythonImage(b)
	be := testutil.RequireDocker(b)
	if _, err := exec.LookPath("docker"); err != nil {
		testutil.Missing(b, "the docker CLI (apt-get install docker.io)")
	}
	c, err := client.Dial(addr, 10*time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	execute := func(sid, kid string) time.Duration {
		t0 := time.Now()
		v, err := c.Call(ctx, "execute", []any{sid, kid, 3, "", "query", "1", map[string]any{}, 60.0}, nil)
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		m := v.(msgpack.Map)
		if st, _ := m.Get("status"); st != "finished" {
			b.Fatalf("execute: %v", m)
		}
		if ex, _ := m.Get("exitCode"); fmt.Sprint(ex) != "0" {
			b.Fatalf("execute: %v", m)
		}
		return d
	}
	create := func(img string) (sid, kid, container string) {
		sid, kid, args := createArgs(img)
		if _, err := c.Call(ctx, "create_kernels", args, nil); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = c.Call(ctx, "destroy_kernel", []any{kid, sid, "user-requested", false}, nil) })
		list, _ := be.List(ctx, map[string]string{"ai.backend.kernel-id": kid})
		if len(list) != 1 {
			b.Fatal("no kernel container")
		}
		return sid, kid, list[0].ID
	}

	// Time to the first result, and the docker run baseline (the image
	// is warm in both: the agent's kernel runs first).
	t0 := time.Now()
	sid, kid, cid := create(jimg)
	created := time.Since(t0)
	execute(sid, kid) // starts ipykernel
	first := time.Since(t0)
	t0 = time.Now()
	if out, err := exec.Command("docker", "run", "--rm", jimg, "python3", "-c", "print(1)").CombinedOutput(); err != nil || string(out) != "1\n" {
		b.Fatalf("docker run: %v %q", err, out)
	}
	dockerRun := time.Since(t0)

	b.ResetTimer()
	viaAgent := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		viaAgent = append(viaAgent, execute(sid, kid))
	}
	b.StopTimer()

	out, err := exec.Command("docker", "exec", cid, "python3", "-c", directJupyter, fmt.Sprint(b.N)).Output()
	if err != nil {
		b.Fatalf("direct jupyter_client: %v %s", err, out)
	}
	var secs []float64
	if err := json.Unmarshal(out, &secs); err != nil || len(secs) != b.N {
		b.Fatalf("direct jupyter_client output %q: %v", strings.TrimSpace(string(out)), err)
	}
	direct := make([]time.Duration, len(secs))
	for i, s := range secs {
		direct[i] = time.Duration(s * float64(time.Second))
	}
	// The agent path again after the direct client: its iopub traffic
	// reached the runner too, and the path must still answer.
	execute(sid, kid)

	hsid, hkid, _ := create(pyimg)
	execute(hsid, hkid) // starts the helper
	helper := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		helper = append(helper, execute(hsid, hkid))
	}

	b.ReportMetric(ms(quantile(viaAgent, 0.5)), "agent-median-ms")
	b.ReportMetric(ms(quantile(viaAgent, 0.99)), "agent-p99-ms")
	b.ReportMetric(ms(quantile(direct, 0.5)), "direct-median-ms")
	b.ReportMetric(ms(quantile(direct, 0.99)), "direct-p99-ms")
	b.ReportMetric(float64(quantile(viaAgent, 0.5))/float64(quantile(direct, 0.5)), "median-ratio")
	b.ReportMetric(ms(quantile(helper, 0.5)), "helper-median-ms")
	b.ReportMetric(ms(first), "first-result-ms")
	b.ReportMetric(ms(created), "of-which-create-ms")
	b.ReportMetric(ms(dockerRun), "docker-run-ms")
}

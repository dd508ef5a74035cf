package zmq_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/callosum"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/rpc"
	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// pingServer is a bai-agent RPC transport with only the ping method: the
// RPC path without the agent core.
func pingServer(b *testing.B, curve *zmq.Curve) string {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := rpc.NewServer(log, "i-bench")
	s.RegisterInline("ping", func(_ context.Context, c *rpc.Call) (any, error) { return c.Args[0], nil })
	tr, err := zmq.Listen(context.Background(), log, fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(b)), s, curve)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tr.Close)
	return "tcp://" + tr.Addr()
}

func pythonEcho(b *testing.B, py string, certs ...string) string {
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(b))
	script := filepath.Join(testutil.ModuleRoot(b), "test", "pypeer", "echo_router.py")
	cmd := exec.Command(py, append([]string{script, addr}, certs...)...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("echo server: %q %v", line, err)
	}
	return addr
}

type benchKeys struct {
	agent, manager zmq.Certificate
	dir            string
}

func makeKeys(b *testing.B) benchKeys {
	dir := b.TempDir()
	var k benchKeys
	k.dir = dir
	for _, n := range []string{"agent", "manager"} {
		if _, _, err := zmq.WriteCertificates(dir, n); err != nil {
			b.Fatal(err)
		}
	}
	k.agent, _ = zmq.LoadCertificate(filepath.Join(dir, "agent.key_secret"))
	k.manager, _ = zmq.LoadCertificate(filepath.Join(dir, "manager.key_secret"))
	return k
}

// BenchmarkPing measures a Callosum ping round trip (one call in flight)
// and throughput (64 calls in flight on one connection) against
// bai-agent's RPC transport and against a Python pyzmq ROUTER doing the
// same per-call work, with NULL security and with CURVE, in one run.
func BenchmarkPing(b *testing.B) {
	py := requirePython(b)
	keys := makeKeys(b)
	curve := &zmq.Curve{AgentPublic: keys.agent.Public, AgentSecret: keys.agent.Secret, ManagerPublic: keys.manager.Public}
	ccurve := &client.Curve{ServerPublic: keys.agent.Public, Public: keys.manager.Public, Secret: keys.manager.Secret}
	targets := []struct {
		name  string
		addr  func() string
		curve *client.Curve
	}{
		{"go/null", func() string { return pingServer(b, nil) }, nil},
		{"python/null", func() string { return pythonEcho(b, py) }, nil},
		{"go/curve", func() string { return pingServer(b, curve) }, ccurve},
		{"python/curve", func() string {
			return pythonEcho(b, py, filepath.Join(keys.dir, "agent.key_secret"), filepath.Join(keys.dir, "manager.key"))
		}, ccurve},
	}
	for _, tg := range targets {
		addr := tg.addr()
		b.Run(tg.name+"/rtt", func(b *testing.B) {
			c, err := client.Dial(addr, 5*time.Second, tg.curve)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := c.Call(ctx, "ping", []any{"ping"}, nil); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "µs-median")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "µs-p99")
		})
		b.Run(tg.name+"/throughput", func(b *testing.B) {
			sock, err := zmq4.NewSocket(zmq4.DEALER)
			if err != nil {
				b.Fatal(err)
			}
			defer sock.Close()
			if tg.curve != nil {
				_ = sock.ClientAuthCurve(tg.curve.ServerPublic, tg.curve.Public, tg.curve.Secret)
			}
			_ = sock.Connect(addr)
			_, _ = sock.SendMessage("PING", "", "")
			if _, err := sock.RecvMessageBytes(0); err != nil {
				b.Fatal(err)
			}
			payload, _ := msgpack.Marshal(map[string]any{"args": []any{"ping"}, "kwargs": map[string]any{}})
			body := callosum.EncodeBody([]byte{}, payload)
			const window = 64
			sent, recvd := 0, 0
			b.ResetTimer()
			t0 := time.Now()
			for recvd < b.N {
				for sent < b.N && sent-recvd < window {
					h, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: "ping", Okey: []byte{}, Seq: int64(sent)})
					if _, err := sock.SendMessage("UPPER", h, body); err != nil {
						b.Fatal(err)
					}
					sent++
				}
				if _, err := sock.RecvMessageBytes(0); err != nil {
					b.Fatal(err)
				}
				recvd++
			}
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "calls/s")
		})
	}
}

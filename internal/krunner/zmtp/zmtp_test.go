package zmtp

import (
	"context"
	"fmt"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"os/exec"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// The runner's sockets against libzmq as the agent uses it: PUSH connects
// to our PULL, PULL connects to our PUSH; messages keep their frames.
func TestAgainstLibzmq(t *testing.T) {
	pull, err := Listen("PULL", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	push, err := Listen("PUSH", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer push.Close()
	// A reply sent before the agent connects is queued, not lost.
	if err := push.Send([]byte("status"), []byte("early")); err != nil {
		t.Fatal(err)
	}

	ctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Term()
	agentOut, _ := ctx.NewSocket(zmq.PUSH)
	agentIn, _ := ctx.NewSocket(zmq.PULL)
	defer agentOut.Close()
	defer agentIn.Close()
	_ = agentOut.SetLinger(50 * time.Millisecond)
	_ = agentIn.SetLinger(50 * time.Millisecond)
	if err := agentOut.Connect("tcp://" + pull.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if err := agentIn.Connect("tcp://" + push.Addr().String()); err != nil {
		t.Fatal(err)
	}
	_ = agentIn.SetRcvtimeo(5 * time.Second)

	big := strings.Repeat("x", 70000) // a long frame
	if _, err := agentOut.SendMessage("code", big); err != nil {
		t.Fatal(err)
	}
	if _, err := agentOut.SendMessage("status", ""); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := pull.Recv(rctx)
	if err != nil || len(m) != 2 || string(m[0]) != "code" || string(m[1]) != big {
		t.Fatalf("first message: %d frames, %v", len(m), err)
	}
	m, err = pull.Recv(rctx)
	if err != nil || len(m) != 2 || string(m[0]) != "status" || len(m[1]) != 0 {
		t.Fatalf("second message: %q %v", m, err)
	}
	got, err := agentIn.RecvMessage(0)
	if err != nil || fmt.Sprint(got) != "[status early]" {
		t.Fatalf("queued reply: %q %v", got, err)
	}
	for i := 0; i < 100; i++ {
		if err := push.Send([]byte("stdout"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		got, err := agentIn.RecvMessage(0)
		if err != nil || got[1] != fmt.Sprint(i) {
			t.Fatalf("message %d: %q %v", i, got, err)
		}
	}

	// The agent restarts: a new PULL connects, and what the runner sends
	// meanwhile reaches it.
	agentIn.Close()
	// Sent once the runner saw the old connection end: a message written
	// to a connection whose peer is gone is lost, with libzmq as here.
	testutil.Eventually(t, 10*time.Second, "the old peer dropped", func() bool {
		push.mu.Lock()
		defer push.mu.Unlock()
		return len(push.peers) == 0
	})
	if err := push.Send([]byte("finished"), []byte(`{"exitCode":0}`)); err != nil {
		t.Fatal(err)
	}
	again, _ := ctx.NewSocket(zmq.PULL)
	defer again.Close()
	_ = again.SetLinger(0)
	_ = again.SetRcvtimeo(5 * time.Second)
	if err := again.Connect("tcp://" + push.Addr().String()); err != nil {
		t.Fatal(err)
	}
	got, err = again.RecvMessage(0)
	if err != nil || got[0] != "finished" {
		t.Fatalf("after reconnect: %q %v", got, err)
	}
}

// pyzmq frames a message the same way: a PUSH from Python reaches our PULL.
func TestAgainstPyzmq(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import zmq").Run(); err != nil {
		testutil.Missing(t, "python3-zmq (apt-get install python3-zmq)")
	}
	pull, err := Listen("PULL", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	script := fmt.Sprintf(`
import zmq
c = zmq.Context()
s = c.socket(zmq.PUSH)
s.setsockopt(zmq.LINGER, 2000)
s.connect("tcp://%s")
s.send_multipart([b"code", "print('héllo')".encode()])
s.close()
c.term()
`, pull.Addr())
	if out, err := exec.Command("/usr/bin/python3", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("pyzmq: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := pull.Recv(ctx)
	if err != nil || string(m[0]) != "code" || string(m[1]) != "print('héllo')" {
		t.Fatalf("%q %v", m, err)
	}
}

func TestRejectsBadPeers(t *testing.T) {
	pull, err := Listen("PULL", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	ctx, _ := zmq.NewContext()
	defer ctx.Term()
	// A PULL cannot feed a PULL: the handshake is refused, nothing arrives.
	wrong, _ := ctx.NewSocket(zmq.PULL)
	_ = wrong.SetLinger(0)
	_ = wrong.Connect("tcp://" + pull.Addr().String())
	defer wrong.Close()
	// Garbage instead of a greeting.
	c, err := (&netDialer{}).dial(pull.Addr().String())
	if err == nil {
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n" + strings.Repeat("z", 60)))
		c.Close()
	}
	rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if m, err := pull.Recv(rctx); err == nil {
		t.Fatalf("a bad peer delivered %q", m)
	}
	if _, err := Listen("DEALER", "127.0.0.1:0"); err == nil {
		t.Fatal("unsupported type accepted")
	}
}

package zmtp

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
	zmq "github.com/pebbe/zmq4"
)

// curveKeys makes a server keypair and a client keypair with libzmq, as
// the agent does, and the Curve the runner serves with.
func curveKeys(t *testing.T) (cv *Curve, serverPub, clientPub, clientSec string) {
	t.Helper()
	if !zmq.HasCurve() {
		testutil.Missing(t, "libzmq with CURVE (libzmq3-dev built with libsodium)")
	}
	sp, ss, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	cp, cs, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	cv = &Curve{}
	copy(cv.Public[:], zmq.Z85decode(sp))
	copy(cv.Secret[:], zmq.Z85decode(ss))
	copy(cv.Client[:], zmq.Z85decode(cp))
	return cv, sp, cp, cs
}

// newContext is a libzmq context terminated after the test's sockets
// are closed (cleanups run last-in first-out).
func newContext(t *testing.T) *zmq.Context {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = zctx.Term() })
	return zctx
}

// libzmqPeer connects a libzmq socket of type kind to addr as a CURVE
// client with the given keys ("" server key: the NULL mechanism).
func libzmqPeer(t *testing.T, zctx *zmq.Context, kind zmq.Type, addr, serverPub, pub, sec string) *zmq.Socket {
	t.Helper()
	s, err := zctx.NewSocket(kind)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_ = s.SetLinger(0)
	_ = s.SetRcvtimeo(5 * time.Second)
	if serverPub != "" {
		for _, err := range []error{s.SetCurveServerkey(serverPub), s.SetCurvePublickey(pub), s.SetCurveSecretkey(sec)} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Connect("tcp://" + addr); err != nil {
		t.Fatal(err)
	}
	return s
}

// The agent's side (libzmq as a CURVE client with the kernel's client
// key) talks to the runner's CURVE sockets both ways, frames intact.
func TestCurveAgainstLibzmq(t *testing.T) {
	cv, sp, cp, cs := curveKeys(t)
	pull, err := ListenCurve("PULL", "127.0.0.1:0", cv)
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	push, err := ListenCurve("PUSH", "127.0.0.1:0", cv)
	if err != nil {
		t.Fatal(err)
	}
	defer push.Close()
	zctx := newContext(t)
	out := libzmqPeer(t, zctx, zmq.PUSH, pull.Addr().String(), sp, cp, cs)
	in := libzmqPeer(t, zctx, zmq.PULL, push.Addr().String(), sp, cp, cs)

	big := string(make([]byte, 70000))
	for i := 0; i < 3; i++ {
		if _, err := out.SendMessage("code", big, ""); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		m, err := pull.Recv(rctx)
		if err != nil || len(m) != 3 || string(m[0]) != "code" || string(m[1]) != big || len(m[2]) != 0 {
			t.Fatalf("message %d: %d frames, %v", i, len(m), err)
		}
	}
	for i := 0; i < 50; i++ {
		if err := push.Send([]byte("stdout"), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		got, err := in.RecvMessageBytes(0)
		if err != nil || len(got) != 2 || string(got[0]) != "stdout" || got[1][0] != byte(i) {
			t.Fatalf("reply %d: %q %v", i, got, err)
		}
	}
}

// Nobody but the kernel's agent gets a message in: a NULL peer, a CURVE
// client with another client key, one that has the wrong server key,
// and raw garbage or truncated handshakes are all refused, and the
// socket still serves the right client afterwards.
func TestCurveRefusesStrangers(t *testing.T) {
	cv, sp, cp, cs := curveKeys(t)
	pull, err := ListenCurve("PULL", "127.0.0.1:0", cv)
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	addr := pull.Addr().String()
	zctx := newContext(t)
	otherPub, otherSec, _ := zmq.NewCurveKeypair()
	otherServer, _, _ := zmq.NewCurveKeypair()
	strangers := []struct{ name, server, pub, sec string }{
		{"NULL mechanism", "", "", ""},
		{"another client key", sp, otherPub, otherSec},
		{"the wrong server key", otherServer, cp, cs},
	}
	for _, s := range strangers {
		sock := libzmqPeer(t, zctx, zmq.PUSH, addr, s.server, s.pub, s.sec)
		_ = sock.SetSndtimeo(200 * time.Millisecond)
		_, _ = sock.SendMessage("code", "from "+s.name)
	}
	raw := []struct {
		name string
		send []byte
	}{
		{"HTTP", []byte("GET / HTTP/1.0\r\n\r\n" + string(make([]byte, 60)))},
		{"greeting then a huge frame", append(greeting("CURVE", false), 0x06, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)},
		{"truncated HELLO", append(greeting("CURVE", false), 0x04, 200, 5, 'H', 'E', 'L', 'L', 'O', 1, 0)},
		{"short HELLO", append(greeting("CURVE", false), append([]byte{0x04, 8, 5}, "HELLO\x01\x00"...)...)},
		{"garbage HELLO", append(greeting("CURVE", false), append([]byte{0x04, 200, 5}, append([]byte("HELLO\x01\x00"), make([]byte, 192)...)...)...)},
		{"MESSAGE before the handshake", append(greeting("CURVE", false), append([]byte{0x00, 20, 7}, append([]byte("MESSAGE"), make([]byte, 12)...)...)...)},
	}
	for _, r := range raw {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(r.send)
		// The runner hangs up (or waits for the rest until its deadline);
		// either way nothing reaches Recv.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _ = bufio.NewReader(c).Discard(1 << 20)
		c.Close()
	}
	rctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if m, err := pull.Recv(rctx); err == nil {
		t.Fatalf("a stranger delivered %q", m)
	}
	// The agent still gets through.
	good := libzmqPeer(t, zctx, zmq.PUSH, addr, sp, cp, cs)
	if _, err := good.SendMessage("code", "print(1)"); err != nil {
		t.Fatal(err)
	}
	rctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	m, err := pull.Recv(rctx2)
	if err != nil || string(m[1]) != "print(1)" {
		t.Fatalf("the agent after strangers: %q %v", m, err)
	}
}

// A client of the right key whose MESSAGE is tampered with, replayed or
// garbage after the handshake is dropped: the codec refuses it.
func TestCurveCodecRefusesTampering(t *testing.T) {
	var k [32]byte
	k[0] = 1
	cc := &curveCodec{shared: k, sendNonce: 5, recvNonce: 4}
	// A client-direction box made with the same key (the codec's own seal
	// uses the server prefix, which open must refuse).
	own := cc.seal(0, []byte("x"))
	if _, _, err := cc.open(own); err == nil {
		t.Fatal("a server-direction box was accepted as the client's")
	}
	for _, body := range [][]byte{nil, []byte("\x07MESSAGE"), append([]byte("\x07MESSAGE\x00\x00\x00\x00\x00\x00\x00\x09"), make([]byte, 17)...)} {
		if _, _, err := cc.open(body); err == nil {
			t.Fatalf("%q accepted", body)
		}
	}
}

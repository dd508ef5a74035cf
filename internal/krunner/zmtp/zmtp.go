package zmtp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by a closed socket.
var ErrClosed = errors.New("zmtp: socket closed")

// Limits.
const (
	// MaxFrame bounds one incoming frame (the agent never sends more
	// than its 10 MiB record cap; code is far smaller).
	MaxFrame = 256 << 20
	// MaxQueued bounds what PUSH holds while no peer is connected.
	MaxQueued = 10000
)

const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

func greeting(mech string, asServer bool) []byte {
	g := make([]byte, 64)
	g[0] = 0xFF
	g[8] = 0x01 // ZMTP/1.0 compatible length byte, as libzmq sends
	g[9] = 0x7F
	g[10], g[11] = 3, 0
	copy(g[12:32], mech)
	if asServer {
		g[32] = 1
	}
	return g
}

func command(name string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(byte(len(name)))
	b.WriteString(name)
	b.Write(body)
	return b.Bytes()
}

func property(name, value string) []byte {
	var b bytes.Buffer
	b.WriteByte(byte(len(name)))
	b.WriteString(name)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(value)))
	b.WriteString(value)
	return b.Bytes()
}

func writeFrame(w *bufio.Writer, flags byte, body []byte) error {
	if len(body) > 255 {
		flags |= flagLong
		if err := w.WriteByte(flags); err != nil {
			return err
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(body)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
	} else {
		if err := w.WriteByte(flags); err != nil {
			return err
		}
		if err := w.WriteByte(byte(len(body))); err != nil {
			return err
		}
	}
	_, err := w.Write(body)
	return err
}

func readFrame(r *bufio.Reader) (flags byte, body []byte, err error) {
	return readFrameMax(r, MaxFrame)
}

// readFrameMax reads one frame of at most max bytes.
func readFrameMax(r *bufio.Reader, max uint64) (flags byte, body []byte, err error) {
	flags, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	var size uint64
	if flags&flagLong != 0 {
		var n [8]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return 0, nil, err
		}
		size = binary.BigEndian.Uint64(n[:])
	} else {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		size = uint64(b)
	}
	if size > max {
		return 0, nil, fmt.Errorf("zmtp: frame of %d bytes exceeds %d", size, max)
	}
	body = make([]byte, size)
	_, err = io.ReadFull(r, body)
	return flags, body, err
}

// parseReady returns the peer's Socket-Type from a READY body.
func parseReady(body []byte) (string, error) {
	if len(body) < 6 || body[0] != 5 || string(body[1:6]) != "READY" {
		return "", fmt.Errorf("zmtp: expected READY, got %q", body[:min(len(body), 16)])
	}
	return parseProperties(body[6:])
}

// parseProperties returns the Socket-Type of a ZMTP metadata block.
func parseProperties(p []byte) (string, error) {
	sockType := ""
	for len(p) > 0 {
		n := int(p[0])
		if len(p) < 1+n+4 {
			return "", errors.New("zmtp: truncated READY property")
		}
		name := string(p[1 : 1+n])
		vl := int(binary.BigEndian.Uint32(p[1+n : 5+n]))
		if len(p) < 5+n+vl {
			return "", errors.New("zmtp: truncated READY value")
		}
		if name == "Socket-Type" {
			sockType = string(p[5+n : 5+n+vl])
		}
		p = p[5+n+vl:]
	}
	return sockType, nil
}

// peer is one connection after the handshake.
type peer struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	wmu  sync.Mutex
	// cv boxes every frame after a CURVE handshake (nil: NULL).
	cv *curveCodec
}

// writeOut writes one frame, boxed when the connection is CURVE. The
// caller holds wmu.
func (p *peer) writeOut(flags byte, body []byte) error {
	if p.cv != nil {
		return writeFrame(p.w, 0, p.cv.seal(flags, body))
	}
	return writeFrame(p.w, flags, body)
}

// readIn reads one frame, unboxed when the connection is CURVE.
func (p *peer) readIn() (byte, []byte, error) {
	fl, body, err := readFrame(p.r)
	if err != nil || p.cv == nil {
		return fl, body, err
	}
	return p.cv.open(body)
}

func (p *peer) send(msg [][]byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for i, f := range msg {
		var flags byte
		if i < len(msg)-1 {
			flags = flagMore
		}
		if err := p.writeOut(flags, f); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

// handshake greets the peer and runs the mechanism: CURVE as the server
// when cv is set (a NULL peer is refused), else NULL.
func handshake(c net.Conn, mine, want string, cv *Curve) (*peer, error) {
	return handshakeID(c, mine, want, cv, nil)
}

// handshakeID is handshake announcing a routing identity (NULL only).
func handshakeID(c net.Conn, mine, want string, cv *Curve, identity []byte) (*peer, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	p := &peer{conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	serve := "NULL"
	if cv != nil {
		serve = "CURVE"
	}
	if _, err := c.Write(greeting(serve, cv != nil)); err != nil {
		return nil, err
	}
	g := make([]byte, 64)
	if _, err := io.ReadFull(p.r, g); err != nil {
		return nil, fmt.Errorf("zmtp: greeting: %w", err)
	}
	if g[0] != 0xFF || g[9]&1 == 0 {
		return nil, errors.New("zmtp: not a ZMTP peer")
	}
	if g[10] < 3 {
		return nil, fmt.Errorf("zmtp: peer speaks ZMTP %d.%d, need 3.x", g[10], g[11])
	}
	if mech := string(bytes.TrimRight(g[12:32], "\x00")); mech != serve {
		return nil, fmt.Errorf("zmtp: peer wants mechanism %q, only %s is served", mech, serve)
	}
	if cv != nil {
		t, cc, err := curveServer(p, cv, mine)
		if err != nil {
			return nil, err
		}
		if t != want {
			return nil, fmt.Errorf("zmtp: a %s socket cannot talk to %s", mine, t)
		}
		p.cv = cc
		return p, nil
	}
	props := property("Socket-Type", mine)
	if len(identity) > 0 {
		props = append(props, property("Identity", string(identity))...)
	}
	if err := writeFrame(p.w, flagCommand, command("READY", props)); err != nil {
		return nil, err
	}
	if err := p.w.Flush(); err != nil {
		return nil, err
	}
	for {
		flags, body, err := readFrameMax(p.r, handshakeMax)
		if err != nil {
			return nil, fmt.Errorf("zmtp: READY: %w", err)
		}
		if flags&flagCommand == 0 {
			return nil, errors.New("zmtp: message before READY")
		}
		t, err := parseReady(body)
		if err != nil {
			return nil, err
		}
		if t != want {
			return nil, fmt.Errorf("zmtp: a %s socket cannot talk to %s", mine, t)
		}
		return p, nil
	}
}

// readMessage reads one message, answering PING commands on the way.
func (p *peer) readMessage() ([][]byte, error) {
	var msg [][]byte
	for {
		fl, body, err := p.readIn()
		if err != nil {
			return nil, err
		}
		if fl&flagCommand != 0 {
			if len(body) >= 5 && body[0] == 4 && string(body[1:5]) == "PING" {
				ctx := []byte{}
				if len(body) > 7 {
					ctx = body[7:]
				}
				p.wmu.Lock()
				err := p.writeOut(flagCommand, command("PONG", ctx))
				if err == nil {
					err = p.w.Flush()
				}
				p.wmu.Unlock()
				if err != nil {
					return nil, err
				}
			}
			continue
		}
		msg = append(msg, body)
		if fl&flagMore == 0 {
			return msg, nil
		}
	}
}

// Socket is a bound PULL or PUSH socket.
type Socket struct {
	kind, want string
	cv         *Curve
	ln         net.Listener
	in         chan [][]byte
	done       chan struct{}
	closeOnce  sync.Once

	mu    sync.Mutex
	peers []*peer
	queue [][][]byte
	wg    sync.WaitGroup
}

// Listen binds a PULL or PUSH socket on addr ("0.0.0.0:2000") with the
// NULL mechanism: any peer that can connect is served.
func Listen(kind, addr string) (*Socket, error) { return ListenCurve(kind, addr, nil) }

// ListenCurve binds a PULL or PUSH socket that serves only CurveZMQ
// clients holding cv.Client's secret key (cv nil: NULL, as Listen).
func ListenCurve(kind, addr string, cv *Curve) (*Socket, error) {
	want := map[string]string{"PULL": "PUSH", "PUSH": "PULL"}[kind]
	if want == "" {
		return nil, fmt.Errorf("zmtp: unsupported socket type %q", kind)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Socket{kind: kind, want: want, cv: cv, ln: ln, in: make(chan [][]byte, 1024), done: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the bound address.
func (s *Socket) Addr() net.Addr { return s.ln.Addr() }

func (s *Socket) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
		}()
	}
}

func (s *Socket) serve(c net.Conn) {
	defer c.Close()
	p, err := handshake(c, s.kind, s.want, s.cv)
	if err != nil {
		return
	}
	if s.kind == "PUSH" {
		s.mu.Lock()
		s.peers = append(s.peers, p)
		queued := s.queue
		s.queue = nil
		s.mu.Unlock()
		for i, m := range queued {
			if err := p.send(m); err != nil {
				s.mu.Lock()
				s.queue = append(queued[i:], s.queue...)
				s.mu.Unlock()
				break
			}
		}
		defer s.drop(p)
	}
	go func() {
		<-s.done
		c.Close()
	}()
	for {
		msg, err := p.readMessage()
		if err != nil {
			return
		}
		if s.kind != "PULL" {
			continue // a PULL peer sends nothing but commands
		}
		select {
		case s.in <- msg:
		case <-s.done:
			return
		}
	}
}

func (s *Socket) drop(p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.peers {
		if q == p {
			s.peers = append(s.peers[:i], s.peers[i+1:]...)
			return
		}
	}
}

// Recv returns the next message of a PULL socket.
func (s *Socket) Recv(ctx context.Context) ([][]byte, error) {
	select {
	case m := <-s.in:
		return m, nil
	case <-s.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send sends a message on a PUSH socket to the newest connected peer
// (falling back to older ones when it fails), queued while there is none.
func (s *Socket) Send(msg ...[]byte) error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	for {
		s.mu.Lock()
		if len(s.peers) == 0 {
			if len(s.queue) >= MaxQueued {
				s.mu.Unlock()
				return fmt.Errorf("zmtp: no peer and %d messages queued", MaxQueued)
			}
			s.queue = append(s.queue, msg)
			s.mu.Unlock()
			return nil
		}
		// The newest peer gets it: the runner has one agent, and an older
		// connection is one that agent left (restarted) and whose close
		// has not been read yet. Round-robin would split a run's output
		// between the dead and the live connection.
		p := s.peers[len(s.peers)-1]
		s.mu.Unlock()
		if err := p.send(msg); err == nil {
			return nil
		}
		p.conn.Close()
		s.drop(p)
	}
}

// Close closes the listener and every peer.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.ln.Close()
	})
	s.wg.Wait()
	return nil
}

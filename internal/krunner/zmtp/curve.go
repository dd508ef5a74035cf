package zmtp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// Curve is the server side of CurveZMQ (RFC 26) for one socket: the
// server's long-term keypair and the one client long-term public key it
// serves. Any other client is refused in INITIATE, before a single
// message of it is read: the REPL ports run code, so only the agent that
// created the kernel may talk to them.
type Curve struct {
	Public, Secret [32]byte
	Client         [32]byte
}

// ErrUnauthorized is a CURVE client whose long-term key is not the one
// the socket serves.
var ErrUnauthorized = errors.New("zmtp: CURVE client key not authorized")

// Sizes of the CURVE handshake commands (RFC 26), name byte included.
const (
	helloSize       = 200
	welcomeSize     = 168
	initiateMinSize = 257
	// handshakeMax bounds a handshake frame: before INITIATE is checked
	// the peer is a stranger, and MaxFrame would let it make the runner
	// allocate 256 MiB per connection.
	handshakeMax = 64 << 10
	// messageHeader is "\x07MESSAGE" and the 8-byte short nonce.
	messageHeader = 16
)

// curveCodec boxes and unboxes the MESSAGE commands of one connection
// after the handshake. sendNonce is guarded by peer.wmu; recvNonce is
// used by the one reading goroutine only.
type curveCodec struct {
	shared    [32]byte // box key of C' and s'
	sendNonce uint64
	recvNonce uint64
}

func nonce(prefix string, tail []byte) *[24]byte {
	var n [24]byte
	copy(n[:], prefix)
	copy(n[len(prefix):], tail)
	return &n
}

func shortNonce(prefix string, v uint64) *[24]byte {
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], v)
	return nonce(prefix, t[:])
}

func hasName(body []byte, name string) bool {
	return len(body) > len(name) && int(body[0]) == len(name) && string(body[1:1+len(name)]) == name
}

// writeCommand writes and flushes one unencrypted handshake command.
func writeCommand(w *bufio.Writer, body []byte) error {
	if err := writeFrame(w, flagCommand, body); err != nil {
		return err
	}
	return w.Flush()
}

// readCommand reads one handshake command frame, bounded by handshakeMax.
func readCommand(r *bufio.Reader, name string) ([]byte, error) {
	flags, body, err := readFrameMax(r, handshakeMax)
	if err != nil {
		return nil, fmt.Errorf("zmtp: %s: %w", name, err)
	}
	if flags&flagCommand == 0 || !hasName(body, name) {
		return nil, fmt.Errorf("zmtp: expected %s, got %q", name, body[:min(len(body), 16)])
	}
	return body, nil
}

// curveServer runs the server half of the CURVE handshake after the
// greetings: HELLO, WELCOME (with a cookie), INITIATE (the client's
// long-term key, vouched for and checked against cv.Client), READY. It
// returns the peer's Socket-Type and the connection's message codec.
func curveServer(p *peer, cv *Curve, mine string) (string, *curveCodec, error) {
	hello, err := readCommand(p.r, "HELLO")
	if err != nil {
		return "", nil, err
	}
	if len(hello) != helloSize || hello[6] != 1 || hello[7] != 0 {
		return "", nil, fmt.Errorf("zmtp: bad HELLO (%d bytes, version %d.%d)", len(hello), hello[min(6, len(hello)-1)], hello[min(7, len(hello)-1)])
	}
	var cPrime [32]byte // the client's transient public key
	copy(cPrime[:], hello[80:112])
	sig, ok := box.Open(nil, hello[120:200], nonce("CurveZMQHELLO---", hello[112:120]), &cPrime, &cv.Secret)
	if !ok || !bytes.Equal(sig, make([]byte, 64)) {
		return "", nil, errors.New("zmtp: HELLO signature box does not open (the client has another server key)")
	}

	// WELCOME: our transient key and a cookie holding C' and s', sealed
	// with a key only this connection knows; INITIATE must return it.
	sPrimePub, sPrime, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	var cookieKey [32]byte
	var cookieNonce, welcomeNonce [16]byte
	for _, b := range [][]byte{cookieKey[:], cookieNonce[:], welcomeNonce[:]} {
		if _, err := rand.Read(b); err != nil {
			return "", nil, err
		}
	}
	plainCookie := append(append([]byte{}, cPrime[:]...), sPrime[:]...)
	cookie := append(append([]byte{}, cookieNonce[:]...), secretbox.Seal(nil, plainCookie, nonce("COOKIE--", cookieNonce[:]), &cookieKey)...)
	welcome := append([]byte("\x07WELCOME"), welcomeNonce[:]...)
	welcome = box.Seal(welcome, append(append([]byte{}, sPrimePub[:]...), cookie...), nonce("WELCOME-", welcomeNonce[:]), &cPrime, &cv.Secret)
	if len(welcome) != welcomeSize {
		return "", nil, fmt.Errorf("zmtp: WELCOME of %d bytes", len(welcome))
	}
	if err := writeCommand(p.w, welcome); err != nil {
		return "", nil, err
	}

	ini, err := readCommand(p.r, "INITIATE")
	if err != nil {
		return "", nil, err
	}
	if len(ini) < initiateMinSize {
		return "", nil, fmt.Errorf("zmtp: INITIATE of %d bytes", len(ini))
	}
	back, ok := secretbox.Open(nil, ini[25:105], nonce("COOKIE--", ini[9:25]), &cookieKey)
	if !ok || subtle.ConstantTimeCompare(back, plainCookie) != 1 {
		return "", nil, errors.New("zmtp: INITIATE cookie is not ours")
	}
	iniNonce := binary.BigEndian.Uint64(ini[105:113])
	plain, ok := box.Open(nil, ini[113:], nonce("CurveZMQINITIATE", ini[105:113]), &cPrime, sPrime)
	if !ok || len(plain) < 128 {
		return "", nil, errors.New("zmtp: INITIATE box does not open")
	}
	var client [32]byte
	copy(client[:], plain[:32])
	vouch, ok := box.Open(nil, plain[48:128], nonce("VOUCH---", plain[32:48]), &client, sPrime)
	if !ok || len(vouch) != 64 || subtle.ConstantTimeCompare(vouch[:32], cPrime[:]) != 1 || subtle.ConstantTimeCompare(vouch[32:], cv.Public[:]) != 1 {
		return "", nil, errors.New("zmtp: INITIATE vouch does not hold")
	}
	if subtle.ConstantTimeCompare(client[:], cv.Client[:]) != 1 {
		// As libzmq's ZAP refusal: an ERROR the client logs, then close.
		_ = writeCommand(p.w, append([]byte("\x05ERROR\x03"), "400"...))
		return "", nil, ErrUnauthorized
	}
	peerType, err := parseProperties(plain[128:])
	if err != nil {
		return "", nil, err
	}

	cc := &curveCodec{recvNonce: iniNonce, sendNonce: 1}
	box.Precompute(&cc.shared, &cPrime, sPrime)
	ready := append([]byte("\x05READY"), make([]byte, 8)...)
	binary.BigEndian.PutUint64(ready[6:], cc.sendNonce)
	ready = box.SealAfterPrecomputation(ready, property("Socket-Type", mine), shortNonce("CurveZMQREADY---", cc.sendNonce), &cc.shared)
	cc.sendNonce++
	if err := writeCommand(p.w, ready); err != nil {
		return "", nil, err
	}
	return peerType, cc, nil
}

// seal boxes one frame (flags: flagMore and/or flagCommand as ZMTP
// frame flags) into a MESSAGE command body. The caller holds peer.wmu.
func (cc *curveCodec) seal(flags byte, body []byte) []byte {
	var inner byte
	if flags&flagMore != 0 {
		inner |= 0x01
	}
	if flags&flagCommand != 0 {
		inner |= 0x02
	}
	out := make([]byte, messageHeader, messageHeader+box.Overhead+1+len(body))
	copy(out, "\x07MESSAGE")
	binary.BigEndian.PutUint64(out[8:], cc.sendNonce)
	n := shortNonce("CurveZMQMESSAGES", cc.sendNonce)
	cc.sendNonce++
	return box.SealAfterPrecomputation(out, append([]byte{inner}, body...), n, &cc.shared)
}

// open unboxes a MESSAGE command body into ZMTP frame flags and the
// frame. A replayed or reordered nonce is an error, as in libzmq.
func (cc *curveCodec) open(body []byte) (byte, []byte, error) {
	if len(body) < messageHeader+box.Overhead+1 || !hasName(body, "MESSAGE") {
		return 0, nil, errors.New("zmtp: expected a CURVE MESSAGE")
	}
	v := binary.BigEndian.Uint64(body[8:16])
	if v <= cc.recvNonce {
		return 0, nil, errors.New("zmtp: CURVE MESSAGE nonce not increasing")
	}
	plain, ok := box.OpenAfterPrecomputation(nil, body[16:], nonce("CurveZMQMESSAGEC", body[8:16]), &cc.shared)
	if !ok || len(plain) < 1 {
		return 0, nil, errors.New("zmtp: CURVE MESSAGE box does not open")
	}
	cc.recvNonce = v
	var flags byte
	if plain[0]&0x01 != 0 {
		flags |= flagMore
	}
	if plain[0]&0x02 != 0 {
		flags |= flagCommand
	}
	return flags, plain[1:], nil
}

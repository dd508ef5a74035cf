package jupyter

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Delimiter separates the routing identities from the message frames.
const Delimiter = "<IDS|MSG>"

// ProtocolVersion is the messaging protocol version this client speaks.
const ProtocolVersion = "5.3"

// ErrSignature is returned for a message whose signature does not match.
var ErrSignature = errors.New("jupyter: bad message signature")

// Header is a message header (and, for replies, the parent header).
type Header struct {
	MsgID    string `json:"msg_id"`
	Session  string `json:"session"`
	Username string `json:"username"`
	Date     string `json:"date"`
	MsgType  string `json:"msg_type"`
	Version  string `json:"version"`
}

// Message is one decoded message. Content stays raw JSON for the caller
// to decode into the type its msg_type implies.
type Message struct {
	Identities [][]byte
	Header     Header
	Parent     Header // zero when the parent header is {}
	Metadata   map[string]any
	Content    json.RawMessage
	Buffers    [][]byte
}

// Session signs and builds messages as one client session.
type Session struct {
	Key      []byte
	ID       string
	Username string
}

// NewSession is a session with a random ID; key may be empty (unsigned).
func NewSession(key []byte, username string) *Session {
	return &Session{Key: key, ID: NewID(), Username: username}
}

// NewID is a random UUID-4 string, as jupyter_client makes msg_ids.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Sign is the hex HMAC-SHA256 of the frames under the session key, or ""
// when there is no key (signing disabled).
func (s *Session) Sign(frames ...[]byte) string {
	if len(s.Key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, s.Key)
	for _, f := range frames {
		m.Write(f)
	}
	return hex.EncodeToString(m.Sum(nil))
}

// New makes a message of msgType with content, replying to parent (nil:
// a request).
func (s *Session) New(msgType string, content any, parent *Header) (*Message, error) {
	c, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	m := &Message{Header: Header{
		MsgID: NewID(), Session: s.ID, Username: s.Username, MsgType: msgType, Version: ProtocolVersion,
		Date: time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
	}, Content: c, Metadata: map[string]any{}}
	if parent != nil {
		m.Parent = *parent
	}
	return m, nil
}

// Serialize is the message's frames: identities, delimiter, signature,
// header, parent header, metadata, content, buffers.
func (s *Session) Serialize(m *Message) ([][]byte, error) {
	h, err := json.Marshal(m.Header)
	if err != nil {
		return nil, err
	}
	p := []byte("{}")
	if m.Parent != (Header{}) {
		if p, err = json.Marshal(m.Parent); err != nil {
			return nil, err
		}
	}
	md := []byte("{}")
	if len(m.Metadata) > 0 {
		if md, err = json.Marshal(m.Metadata); err != nil {
			return nil, err
		}
	}
	c := []byte(m.Content)
	if len(c) == 0 {
		c = []byte("{}")
	}
	out := make([][]byte, 0, len(m.Identities)+6+len(m.Buffers))
	out = append(out, m.Identities...)
	out = append(out, []byte(Delimiter), []byte(s.Sign(h, p, md, c)), h, p, md, c)
	return append(out, m.Buffers...), nil
}

// Deserialize decodes frames, checking the signature when the session
// has a key.
func (s *Session) Deserialize(frames [][]byte) (*Message, error) {
	i := 0
	for i < len(frames) && !bytes.Equal(frames[i], []byte(Delimiter)) {
		i++
	}
	if i == len(frames) {
		return nil, errors.New("jupyter: no <IDS|MSG> delimiter")
	}
	rest := frames[i+1:]
	if len(rest) < 5 {
		return nil, fmt.Errorf("jupyter: %d frames after the delimiter, need 5", len(rest))
	}
	if len(s.Key) > 0 {
		want := s.Sign(rest[1], rest[2], rest[3], rest[4])
		if !hmac.Equal([]byte(want), rest[0]) {
			return nil, ErrSignature
		}
	}
	m := &Message{Identities: frames[:i], Content: json.RawMessage(rest[4]), Buffers: rest[5:]}
	if err := json.Unmarshal(rest[1], &m.Header); err != nil {
		return nil, fmt.Errorf("jupyter: header: %w", err)
	}
	if err := json.Unmarshal(rest[2], &m.Parent); err != nil {
		return nil, fmt.Errorf("jupyter: parent header: %w", err)
	}
	if err := json.Unmarshal(rest[3], &m.Metadata); err != nil {
		return nil, fmt.Errorf("jupyter: metadata: %w", err)
	}
	return m, nil
}

func cryptoRead(b []byte) (int, error) { return rand.Read(b) }

func hexString(b []byte) string { return hex.EncodeToString(b) }

// Package kauth is the per-kernel secret the agent hands the kernel
// runner: the CurveZMQ keys of the REPL sockets and the web terminal's
// token. The agent writes it into the kernel's config folder
// (/home/config, read-only in the container) as a file only root may
// read; the runner's entrypoint reads it as root before it drops to the
// kernel user and passes it on through a pipe, so the kernel user never
// sees it without sudo. The agent reads its half back from the same file
// after a restart: the kernel cannot write there.
package kauth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/box"

	"github.com/bai-agent/bai-agent/internal/krunner/zmtp"
)

// File is the secret's name in the kernel's config folder.
const File = "krunner-auth.json"

// FDEnv names the environment variable by which the entrypoint tells
// the runner which inherited descriptor carries the secret.
const FDEnv = "BAI_KRUNNER_AUTH_FD"

// MaxSize bounds the file (it is a few hundred bytes).
const MaxSize = 64 << 10

// Secrets is the file's content. Keys are Z85 (40 characters), as
// libzmq's and pyzmq's CURVE options take them.
type Secrets struct {
	// ServerPublic/ServerSecret are the runner's CURVE keypair.
	ServerPublic string `json:"curve_server_public"`
	ServerSecret string `json:"curve_server_secret"`
	// ClientPublic is the one client key the runner serves; the agent
	// alone holds ClientSecret (the runner ignores it).
	ClientPublic string `json:"curve_client_public"`
	ClientSecret string `json:"curve_client_secret"`
	// TermToken authenticates the web terminal (ttyd service).
	TermToken string `json:"ttyd_token"`
}

// Generate makes fresh keys and a fresh token.
func Generate() (*Secrets, error) {
	sp, ss, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("runner server key: %w", err)
	}
	cp, cs, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("runner client key: %w", err)
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("terminal token: %w", err)
	}
	return &Secrets{
		ServerPublic: Z85Encode(sp[:]), ServerSecret: Z85Encode(ss[:]),
		ClientPublic: Z85Encode(cp[:]), ClientSecret: Z85Encode(cs[:]),
		TermToken: hex.EncodeToString(tok),
	}, nil
}

// Parse reads and checks the file's content.
func Parse(b []byte) (*Secrets, error) {
	var s Secrets
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", File, err)
	}
	for name, k := range map[string]string{"curve_server_public": s.ServerPublic, "curve_server_secret": s.ServerSecret, "curve_client_public": s.ClientPublic} {
		if _, err := key(k); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", File, name, err)
		}
	}
	if s.ClientSecret != "" {
		if _, err := key(s.ClientSecret); err != nil {
			return nil, fmt.Errorf("%s: curve_client_secret: %w", File, err)
		}
	}
	if len(s.TermToken) < 16 {
		return nil, fmt.Errorf("%s: ttyd_token missing or too short", File)
	}
	return &s, nil
}

// Marshal is the file's content (Z85's <, > and & kept as they are, so
// the file reads as the keys it holds).
func (s *Secrets) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Curve is what the runner's sockets serve with.
func (s *Secrets) Curve() (*zmtp.Curve, error) {
	var cv zmtp.Curve
	for _, kv := range []struct {
		dst *[32]byte
		z85 string
	}{{&cv.Public, s.ServerPublic}, {&cv.Secret, s.ServerSecret}, {&cv.Client, s.ClientPublic}} {
		k, err := key(kv.z85)
		if err != nil {
			return nil, err
		}
		*kv.dst = k
	}
	// The public key must be the secret's: a mismatch would refuse the
	// agent with a HELLO that "does not open", a confusing error.
	var pub [32]byte
	if p, _, err := box.GenerateKey(constReader(cv.Secret[:])); err == nil {
		pub = *p
	}
	if pub != cv.Public {
		return nil, errors.New("curve_server_public is not curve_server_secret's public key")
	}
	return &cv, nil
}

func key(z string) ([32]byte, error) {
	var k [32]byte
	if len(z) != 40 {
		return k, fmt.Errorf("a CURVE key is 40 Z85 characters, not %d", len(z))
	}
	b, err := Z85Decode(z)
	if err != nil {
		return k, err
	}
	copy(k[:], b)
	return k, nil
}

// constReader yields b (then zeros): box.GenerateKey with it derives the
// public key of the secret b.
type constReader []byte

func (c constReader) Read(p []byte) (int, error) {
	n := copy(p, c)
	clear(p[n:])
	return len(p), nil
}

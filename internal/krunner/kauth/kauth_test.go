package kauth

import (
	"bytes"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
	zmq "github.com/pebbe/zmq4"
)

// Z85 agrees with libzmq's both ways, and with RFC 32's example.
func TestZ85(t *testing.T) {
	if got := Z85Encode([]byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}); got != "HelloWorld" {
		t.Fatalf("RFC 32 example: %q", got)
	}
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		testutil.Missing(t, "libzmq with CURVE (libzmq3-dev built with libsodium)")
	}
	for _, k := range []string{pub, sec} {
		b, err := Z85Decode(k)
		if err != nil || !bytes.Equal(b, []byte(zmq.Z85decode(k))) || Z85Encode(b) != k {
			t.Fatalf("%s: %x %v", k, b, err)
		}
	}
	for _, bad := range []string{"abcd", "abcd\"", "%%%%%"} {
		if _, err := Z85Decode(bad); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}

func TestSecrets(t *testing.T) {
	s, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Marshal()
	back, err := Parse(b)
	if err != nil || *back != *s {
		t.Fatalf("%+v %v", back, err)
	}
	if _, err := back.Curve(); err != nil {
		t.Fatal(err)
	}
	// libzmq derives the same public key from the secret.
	if pub, err := zmq.AuthCurvePublic(s.ServerSecret); err == nil && pub != s.ServerPublic {
		t.Fatalf("libzmq says %s, we wrote %s", pub, s.ServerPublic)
	}
	other, _ := Generate()
	mixed := *s
	mixed.ServerPublic = other.ServerPublic
	if _, err := mixed.Curve(); err == nil {
		t.Fatal("a public key of another secret accepted")
	}
	for _, tc := range []struct{ name, body string }{
		{"not JSON", "x"},
		{"short key", strings.Replace(string(b), s.ServerSecret, "abc", 1)},
		{"no token", strings.Replace(string(b), s.TermToken, "", 1)},
	} {
		if _, err := Parse([]byte(tc.body)); err == nil {
			t.Fatalf("%s: parsed", tc.name)
		}
	}
}

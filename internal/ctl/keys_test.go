package ctl

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestSSHKeyPairIsTheManagersFormat(t *testing.T) {
	pub, priv, err := sshKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "ssh-rsa ") || !strings.HasSuffix(pub, "\n") || strings.HasSuffix(pub, "\n\n") {
		t.Fatalf("public key %q", pub)
	}
	if !strings.HasPrefix(priv, "-----BEGIN RSA PRIVATE KEY-----\n") || !strings.HasSuffix(priv, "-----END RSA PRIVATE KEY-----\n") {
		t.Fatalf("private key is not PKCS#1 PEM: %.40q", priv)
	}
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	if string(signer.PublicKey().Marshal()) != string(want.Marshal()) {
		t.Fatal("the public key is not the private key's")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	const kid = "6b1f0d2e-1c7a-4a53-9d7e-2f5b8c3a9e10"
	p, err := saveKey(dir, kid, "secret\n")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode())
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("key folder mode %v", st.Mode())
	}
	if got, ok := existingKey(dir, kid); !ok || got != p {
		t.Fatalf("existingKey: %q %v", got, ok)
	}
	if _, err := saveKey(dir, kid, "other\n"); err == nil {
		t.Fatal("a second key overwrote the first")
	}
	for _, bad := range []string{"../x", "a/b", "", "x y"} {
		if _, err := saveKey(dir, bad, "k"); err == nil {
			t.Errorf("kernel id %q named a key file", bad)
		}
	}
	removeKey(dir, kid)
	if _, ok := existingKey(dir, kid); ok {
		t.Fatal("key still there after removeKey")
	}
}

func TestSaveMedia(t *testing.T) {
	dir := t.TempDir()
	png := []byte("\x89PNG\r\n\x1a\nfake")
	tests := []struct {
		mime, data, ext string
		want            []byte
		bad             bool
	}{
		{"image/png", base64.StdEncoding.EncodeToString(png), ".png", png, false},
		// As both runners send it.
		{"image/png", "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), ".png", png, false},
		{"image/svg+xml", "<svg/>", ".svg", []byte("<svg/>"), false},
		{"text/html", "<b>x</b>", ".html", []byte("<b>x</b>"), false},
		{"image/png", "not base64!", "", nil, true},
	}
	for _, tt := range tests {
		p, err := saveMedia(dir, tt.mime, tt.data)
		if tt.bad {
			if err == nil {
				t.Errorf("%s %q: saved", tt.mime, tt.data)
			}
			continue
		}
		if err != nil || filepath.Ext(p) != tt.ext {
			t.Fatalf("%s: %q %v", tt.mime, p, err)
		}
		if b, _ := os.ReadFile(p); string(b) != string(tt.want) {
			t.Errorf("%s: wrote %q", tt.mime, b)
		}
	}
}

package ctl

// The session SSH key pair ctl makes on create, as the manager passes the
// user's pair in internal_data.ssh_keypair: the agent writes the public
// key to the kernel user's authorized_keys (and the private key to
// /home/work/id_container), and ctl keeps the private key on this side
// so that `ctl app KERNEL sshd` prints a command that logs in.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// sshKeyPair makes an RSA-2048 pair in the manager's formats
// (generate_ssh_keypair: PKCS#1 PEM private key, OpenSSH public key, each
// ending with one newline).
func sshKeyPair() (pub, priv string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	sp, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	pub = strings.TrimRight(string(ssh.MarshalAuthorizedKey(sp)), "\n") + "\n"
	priv = strings.TrimRight(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})), "\n") + "\n"
	return pub, priv, nil
}

// defaultKeyDir is where ctl keeps the kernels' private keys:
// $XDG_STATE_HOME/bai-agent/ssh, else ~/.local/state/bai-agent/ssh.
func defaultKeyDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "bai-agent", "ssh")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "bai-agent", "ssh")
	}
	return filepath.Join(os.TempDir(), "bai-agent-ssh")
}

var kernelIDPattern = regexp.MustCompile(`^[0-9a-fA-F-]{8,64}$`)

// keyPath is the private key file of a kernel.
func keyPath(dir, kernelID string) (string, error) {
	if !kernelIDPattern.MatchString(kernelID) {
		return "", fmt.Errorf("kernel id %q cannot name a key file", kernelID)
	}
	return filepath.Join(dir, kernelID+".pem"), nil
}

// saveKey writes a kernel's private key, readable by this user only (ssh
// refuses a key others can read).
func saveKey(dir, kernelID, priv string) (string, error) {
	p, err := keyPath(dir, kernelID)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("ssh key folder: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("ssh key: %w", err)
	}
	if _, err := f.WriteString(priv); err != nil {
		f.Close()
		os.Remove(p)
		return "", fmt.Errorf("ssh key: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(p) // a truncated key would block the next save (O_EXCL)
		return "", fmt.Errorf("ssh key: %w", err)
	}
	return p, nil
}

// existingKey returns the kernel's key file if ctl made one.
func existingKey(dir, kernelID string) (string, bool) {
	p, err := keyPath(dir, kernelID)
	if err != nil {
		return "", false
	}
	_, err = os.Stat(p)
	return p, err == nil
}

// removeKey forgets a destroyed kernel's key.
func removeKey(dir, kernelID string) {
	if p, err := keyPath(dir, kernelID); err == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "ssh key of %s not removed: %v\n", kernelID, err)
		}
	}
}

// mediaExt is the file extension of a media output's MIME type.
func mediaExt(mime string) string {
	switch mime {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/svg+xml":
		return ".svg"
	case "image/gif":
		return ".gif"
	case "application/pdf":
		return ".pdf"
	case "text/html":
		return ".html"
	}
	return ".bin"
}

// saveMedia writes one media output (binary images arrive base64-encoded,
// as Jupyter sends them; SVG and HTML as text) into dir and returns its
// path.
func saveMedia(dir, mime, data string) (string, error) {
	// Both runners send binary media as a data URL ("data:image/png;
	// base64,...").
	if rest, ok := strings.CutPrefix(data, "data:"); ok {
		if _, b64, ok := strings.Cut(rest, ";base64,"); ok {
			data = b64
		}
	}
	body := []byte(data)
	if strings.HasPrefix(mime, "image/") && mime != "image/svg+xml" || mime == "application/pdf" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data))
		if err != nil {
			return "", fmt.Errorf("%s output is not base64: %w", mime, err)
		}
		body = b
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "bai-output-*"+mediaExt(mime))
	if err != nil {
		return "", err
	}
	_, err = f.Write(body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name()) // no half-written output left behind
		return "", err
	}
	return f.Name(), nil
}

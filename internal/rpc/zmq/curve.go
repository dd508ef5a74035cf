package zmq

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	zmq4 "github.com/pebbe/zmq4"
)

// ZAPDomain is the ZAP domain of the agent's CURVE server socket.
const ZAPDomain = "local"

// Curve holds the agent's CURVE keys and the one client key it accepts.
type Curve struct {
	AgentPublic   string // Z85
	AgentSecret   string // Z85
	ManagerPublic string // Z85
}

// Certificate is a ZeroMQ certificate file's keys (Z85).
type Certificate struct {
	Public string
	Secret string // empty for a public certificate
}

// LoadCertificate reads a certificate in the format pyzmq's
// zmq.auth.create_certificates writes (and zmq.auth.load_certificate
// reads). Errors name the file.
func LoadCertificate(path string) (Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return Certificate{}, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	var c Certificate
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch k {
		case "public-key":
			c.Public = v
		case "secret-key":
			c.Secret = v
		}
	}
	if err := sc.Err(); err != nil {
		return Certificate{}, fmt.Errorf("key file %s: %w", path, err)
	}
	if c.Public == "" {
		return Certificate{}, fmt.Errorf("key file %s: no public-key (not a ZeroMQ certificate)", path)
	}
	for name, k := range map[string]string{"public-key": c.Public, "secret-key": c.Secret} {
		if k == "" {
			continue
		}
		if len(k) != 40 || len(zmq4.Z85decode(k)) != 32 {
			return Certificate{}, fmt.Errorf("key file %s: %s is not a 40-character Z85 CURVE key", path, name)
		}
	}
	return c, nil
}

// LoadCurve reads the agent keypair (a secret certificate) and the
// manager's public certificate.
func LoadCurve(agentKeypair, managerPublic string) (*Curve, error) {
	a, err := LoadCertificate(agentKeypair)
	if err != nil {
		return nil, err
	}
	if a.Secret == "" {
		return nil, fmt.Errorf("key file %s: no secret-key (rpc-auth-agent-keypair must be the .key_secret file)", agentKeypair)
	}
	m, err := LoadCertificate(managerPublic)
	if err != nil {
		return nil, err
	}
	return &Curve{AgentPublic: a.Public, AgentSecret: a.Secret, ManagerPublic: m.Public}, nil
}

// WriteCertificates writes NAME.key and NAME.key_secret into dir in
// pyzmq's format, with a fresh keypair, and returns the paths.
func WriteCertificates(dir, name string) (public, secret string, err error) {
	if !zmq4.HasCurve() {
		return "", "", errors.New("libzmq was built without CURVE support")
	}
	pub, sec, err := zmq4.NewCurveKeypair()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	stamp := time.Now().UTC().Format("2006-01-02 15:04:05.000000")
	head := func(kind string) string {
		return fmt.Sprintf("#   ****  Generated on %s by bai-agent  ****\n#   ZeroMQ CURVE %s Certificate\n#   Exchange securely, or use a secure mechanism to verify the contents\n#   of this file after exchange. Store public certificates in your home\n#   directory, in the .curve subdirectory.\n\nmetadata\ncurve\n", stamp, kind)
	}
	public = filepath.Join(dir, name+".key")
	secret = filepath.Join(dir, name+".key_secret")
	if err := os.WriteFile(public, []byte(head("Public")+fmt.Sprintf("    public-key = \"%s\"\n", pub)), 0o644); err != nil {
		return "", "", err
	}
	sh := strings.Replace(head("**Secret**"), "#   Exchange securely, or use a secure mechanism to verify the contents\n#   of this file after exchange. Store public certificates in your home\n#   directory, in the .curve subdirectory.\n", "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n", 1)
	if err := os.WriteFile(secret, []byte(sh+fmt.Sprintf("    public-key = \"%s\"\n    secret-key = \"%s\"\n", pub, sec)), 0o600); err != nil {
		return "", "", err
	}
	return public, secret, nil
}

// zap is the process's ZAP handler: one REP socket on
// inproc://zeromq.zap.01 in libzmq's default context, owned by one
// goroutine. It accepts a CURVE client iff the request's domain is
// registered and the client's long-term key is the allowed one, as
// callosum's AgentAuthHandler does.
var zap struct {
	once    sync.Once
	err     error
	mu      sync.Mutex
	allowed map[string]map[string]bool // domain -> z85 key
	onDeny  func(domain, key string)
}

func zapAllow(domain, key string, onDeny func(domain, key string)) error {
	zap.once.Do(func() {
		zap.allowed = map[string]map[string]bool{}
		sock, err := zmq4.NewSocket(zmq4.REP)
		if err != nil {
			zap.err = err
			return
		}
		if err := sock.Bind("inproc://zeromq.zap.01"); err != nil {
			sock.Close()
			zap.err = fmt.Errorf("bind ZAP handler: %w", err)
			return
		}
		go zapServe(sock)
	})
	if zap.err != nil {
		return zap.err
	}
	zap.mu.Lock()
	defer zap.mu.Unlock()
	if zap.allowed[domain] == nil {
		zap.allowed[domain] = map[string]bool{}
	}
	zap.allowed[domain][key] = true
	zap.onDeny = onDeny
	return nil
}

func zapRemove(domain, key string) {
	zap.mu.Lock()
	defer zap.mu.Unlock()
	delete(zap.allowed[domain], key)
}

func zapServe(sock *zmq4.Socket) {
	for {
		req, err := sock.RecvMessageBytes(0)
		if err != nil {
			if retryable(err) {
				continue
			}
			return
		}
		reply := zapDecide(req)
		if _, err := sock.SendMessage(reply); err != nil && !retryable(err) {
			return
		}
	}
}

// zapDecide implements RFC 27 for the agent's rules.
func zapDecide(req [][]byte) []string {
	if len(req) < 6 {
		id := ""
		if len(req) > 1 {
			id = string(req[1])
		}
		return []string{"1.0", id, "400", "Bad request", "", ""}
	}
	version, id, domain, mech := string(req[0]), string(req[1]), string(req[2]), string(req[5])
	if version != "1.0" {
		return []string{"1.0", id, "400", "Invalid version", "", ""}
	}
	if mech != "CURVE" || len(req) != 7 || len(req[6]) != 32 {
		return []string{"1.0", id, "400", "Unsupported authentication mechanism", "", ""}
	}
	key := zmq4.Z85encode(string(req[6]))
	zap.mu.Lock()
	ok := zap.allowed[domain][key]
	onDeny := zap.onDeny
	zap.mu.Unlock()
	if !ok {
		if onDeny != nil {
			onDeny(domain, key)
		}
		return []string{"1.0", id, "400", "Access denied", "", ""}
	}
	return []string{"1.0", id, "200", "OK", "manager", ""}
}

package jupyter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Spec is a kernelspec (kernel.json) and where it was found.
type Spec struct {
	Name          string            `json:"-"`
	Dir           string            `json:"-"`
	Argv          []string          `json:"argv"`
	DisplayName   string            `json:"display_name"`
	Language      string            `json:"language"`
	InterruptMode string            `json:"interrupt_mode"`
	Env           map[string]string `json:"env"`
}

// ErrNoSpec means no kernelspec matched.
var ErrNoSpec = errors.New("jupyter: no matching kernelspec")

// DataDirs are the directories that hold kernels/<name>/kernel.json, in
// the order jupyter_core's jupyter_path searches them: the user's data
// dir ($JUPYTER_DATA_DIR, else $XDG_DATA_HOME/jupyter, else
// ~/.local/share/jupyter), $JUPYTER_PATH, the interpreter's prefix
// (sys.prefix/share/jupyter; prefix "" skips it), then
// /usr/local/share/jupyter and /usr/share/jupyter. env is the kernel's
// environment (KEY=VALUE).
func DataDirs(env []string, prefix string) []string {
	get := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return ""
	}
	var dirs []string
	switch {
	case get("JUPYTER_DATA_DIR") != "":
		dirs = append(dirs, get("JUPYTER_DATA_DIR"))
	case get("XDG_DATA_HOME") != "":
		dirs = append(dirs, filepath.Join(get("XDG_DATA_HOME"), "jupyter"))
	case get("HOME") != "":
		dirs = append(dirs, filepath.Join(get("HOME"), ".local", "share", "jupyter"))
	}
	for _, p := range filepath.SplitList(get("JUPYTER_PATH")) {
		if p != "" {
			dirs = append(dirs, p)
		}
	}
	if prefix != "" {
		dirs = append(dirs, filepath.Join(prefix, "share", "jupyter"))
	}
	return append(dirs, "/usr/local/share/jupyter", "/usr/share/jupyter")
}

// FindSpec returns the first kernelspec whose name contains want (as
// upstream's runner picks "python" → e.g. python3), searching dataDirs in
// order and names within one directory in sorted order. A kernel.json
// that does not parse or has no argv is skipped.
func FindSpec(dataDirs []string, want string) (*Spec, error) {
	seen := map[string]bool{}
	for _, d := range dataDirs {
		kd := filepath.Join(d, "kernels")
		ents, err := os.ReadDir(kd)
		if err != nil {
			continue
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			if seen[strings.ToLower(n)] {
				continue // an earlier directory's spec of that name wins
			}
			b, err := readSpecFile(filepath.Join(kd, n, "kernel.json"))
			if err != nil {
				continue
			}
			seen[strings.ToLower(n)] = true
			if !strings.Contains(n, want) {
				continue
			}
			var s Spec
			if json.Unmarshal(b, &s) != nil || len(s.Argv) == 0 {
				continue
			}
			s.Name, s.Dir = n, filepath.Join(kd, n)
			return &s, nil
		}
	}
	return nil, ErrNoSpec
}

// maxSpecFile bounds a kernel.json (real ones are a few hundred bytes).
const maxSpecFile = 1 << 20

// readSpecFile reads a kernel.json that the kernel's user may have
// replaced: a FIFO must not block the runner (it is read while the
// runner's request loop may wait on it), /dev/zero must not fill its
// memory. Opened without blocking, it must be a regular file of at most
// maxSpecFile bytes.
func readSpecFile(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("jupyter: %s is not a regular file", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSpecFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSpecFile {
		return nil, fmt.Errorf("jupyter: %s is over %d bytes", p, maxSpecFile)
	}
	return b, nil
}

// ConnInfo is a connection file's content.
type ConnInfo struct {
	IP              string `json:"ip"`
	Transport       string `json:"transport"`
	ShellPort       int    `json:"shell_port"`
	IOPubPort       int    `json:"iopub_port"`
	StdinPort       int    `json:"stdin_port"`
	ControlPort     int    `json:"control_port"`
	HBPort          int    `json:"hb_port"`
	Key             string `json:"key"`
	SignatureScheme string `json:"signature_scheme"`
	KernelName      string `json:"kernel_name"`
}

// PortRange is where kernel ports are drawn from: below the Linux
// ephemeral range (32768+), so that they do not collide with outgoing
// connections, and above the well-known and runner ports.
var PortRange = [2]int{20000, 32767}

// NewConnInfo picks five free ports on ip (each probed by binding it)
// and a random 256-bit key.
func NewConnInfo(ip, kernelName string) (*ConnInfo, error) {
	var key [32]byte
	if _, err := cryptoRead(key[:]); err != nil {
		return nil, err
	}
	ports, err := freePorts(ip, 5)
	if err != nil {
		return nil, err
	}
	return &ConnInfo{IP: ip, Transport: "tcp", ShellPort: ports[0], IOPubPort: ports[1], StdinPort: ports[2],
		ControlPort: ports[3], HBPort: ports[4], Key: hexString(key[:]), SignatureScheme: "hmac-sha256", KernelName: kernelName}, nil
}

func freePorts(ip string, n int) ([]int, error) {
	var out []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(out) < n && tries < 500; tries++ {
		p := PortRange[0] + rand.IntN(PortRange[1]-PortRange[0]+1)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		held = append(held, l)
		out = append(out, p)
	}
	if len(out) < n {
		return nil, errors.New("jupyter: no free ports for the kernel")
	}
	return out, nil
}

func (c *ConnInfo) addr(port int) string {
	if c.Transport == "ipc" {
		return "ipc://" + c.IP + "-" + strconv.Itoa(port)
	}
	return net.JoinHostPort(c.IP, strconv.Itoa(port))
}

// NewIPCConnInfo is a connection over Unix sockets named prefix-1 to
// prefix-5 (ipykernel binds "ipc://<ip>-<port>"). A kernel's TCP ports
// on 127.0.0.1 are the host's loopback in a host-network kernel, and a
// PUB socket serves any subscriber: its HMAC signs messages, it does not
// hide them. A socket in a 0700 folder of the kernel's filesystem is
// reachable by the kernel's user alone.
func NewIPCConnInfo(prefix, kernelName string) (*ConnInfo, error) {
	var key [32]byte
	if _, err := cryptoRead(key[:]); err != nil {
		return nil, err
	}
	if len(prefix)+2 > maxSocketPath {
		return nil, fmt.Errorf("jupyter: socket path %q is too long for a Unix socket", prefix)
	}
	return &ConnInfo{IP: prefix, Transport: "ipc", ShellPort: 1, IOPubPort: 2, StdinPort: 3,
		ControlPort: 4, HBPort: 5, Key: hexString(key[:]), SignatureScheme: "hmac-sha256", KernelName: kernelName}, nil
}

// maxSocketPath is sun_path's size less its terminating NUL.
const maxSocketPath = 107

// speaksIPC reports a kernel known to bind Unix sockets when its
// connection file says transport "ipc": ipykernel. Other kernels (IRkernel,
// IJulia, ...) build "tcp"-style addresses whatever the file says, so they
// get TCP.
func (s *Spec) speaksIPC() bool {
	for _, a := range s.Argv {
		if strings.Contains(a, "ipykernel") {
			return true
		}
	}
	return false
}

package krunner

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
)

// sshServer is the runner's built-in SSH server for the sshd service:
// public-key authentication against the kernel user's authorized_keys,
// shells and commands with or without a PTY, and the SFTP subsystem (so
// scp -s, sftp and IDE remotes work), in any image and as the kernel user.
type sshServer struct {
	srv  *ssh.Server
	lns  []net.Listener
	once sync.Once
}

// hostKey loads the runner's host key from /tmp (kept across runner
// restarts inside one container) or makes a new ed25519 key.
func (r *Runner) hostKey() (gossh.Signer, error) {
	path := filepath.Join(os.TempDir(), ".bai-krunner-ssh-host-ed25519")
	if b, err := os.ReadFile(path); err == nil && len(b) == ed25519.PrivateKeySize {
		return gossh.NewSignerFromKey(ed25519.PrivateKey(b))
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	_ = os.WriteFile(path, priv, 0o600)
	return gossh.NewSignerFromKey(priv)
}

// authorized reports whether key is in the work user's authorized_keys
// or is the cluster session's key (config/ssh/id_cluster.pub), which the
// other kernels of the session use.
func (r *Runner) authorized(key ssh.PublicKey) bool {
	return keyListed(filepath.Join(r.o.WorkDir, ".ssh", "authorized_keys"), key) ||
		keyListed(filepath.Join(r.o.ConfigDir, "ssh", "id_cluster.pub"), key)
}

// keyListed reports whether an authorized_keys-format file lists key.
func keyListed(path string, key ssh.PublicKey) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
		if err == nil && ssh.KeysEqual(k, key) {
			return true
		}
	}
	return false
}

func (r *Runner) loginShell() string {
	for _, s := range []string{"/bin/bash", "/bin/zsh", "/bin/ash", "/bin/sh"} {
		if st, err := os.Stat(s); err == nil && !st.IsDir() {
			return s
		}
	}
	return ""
}

func (r *Runner) startSSH(ports []int) error {
	signer, err := r.hostKey()
	if err != nil {
		return err
	}
	s := &sshServer{}
	s.srv = &ssh.Server{
		Handler:          r.sshSession,
		PublicKeyHandler: func(_ ssh.Context, key ssh.PublicKey) bool { return r.authorized(key) },
		// Local forwarding (ssh -L, IDE remotes) reaches the kernel's own
		// loopback only (directTCPIP); remote forwarding (ssh -R,
		// tcpip-forward) and Unix-socket forwarding have no handler and
		// are refused: a listener or a connection made by the runner
		// must not reach the host or its network beyond what the kernel
		// user's own processes can.
		ChannelHandlers: map[string]ssh.ChannelHandler{
			"session":      ssh.DefaultSessionHandler,
			"direct-tcpip": r.directTCPIP,
		},
		ReversePortForwardingCallback: func(ssh.Context, string, uint32) bool { return false },
		SubsystemHandlers: map[string]ssh.SubsystemHandler{"sftp": func(sess ssh.Session) {
			srv, err := sftp.NewServer(sess, sftp.WithServerWorkingDirectory(r.o.WorkDir))
			if err != nil {
				return
			}
			if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
				r.log.Debug("sftp session ended", "error", err)
			}
			_ = srv.Close()
		}},
	}
	s.srv.AddHostKey(signer)
	if s.lns, err = listenAll(ports); err != nil {
		return err
	}
	for _, ln := range s.lns {
		go func(ln net.Listener) { _ = s.srv.Serve(ln) }(ln)
	}
	r.sshMu.Lock()
	r.ssh = s
	r.sshMu.Unlock()
	return nil
}

// listenAll listens on every port on all interfaces (Docker's port
// mapping reaches the container interface), or on none.
func listenAll(ports []int) ([]net.Listener, error) {
	var lns []net.Listener
	for _, p := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func (r *Runner) stopSSH() {
	r.sshMu.Lock()
	s := r.ssh
	r.ssh = nil
	r.sshMu.Unlock()
	if s != nil {
		_ = s.srv.Close()
	}
}

func (r *Runner) sshRunning() bool {
	r.sshMu.Lock()
	defer r.sshMu.Unlock()
	return r.ssh != nil
}

// sshSession runs a login shell or the requested command as the kernel
// user, with a PTY when the client asked for one.
func (r *Runner) sshSession(sess ssh.Session) {
	shell := r.loginShell()
	if shell == "" {
		fmt.Fprintln(sess.Stderr(), "this image has no shell")
		_ = sess.Exit(127)
		return
	}
	var cmd *exec.Cmd
	if raw := sess.RawCommand(); raw != "" {
		cmd = exec.Command(shell, "-c", raw)
	} else {
		cmd = exec.Command(shell, "-l")
	}
	cmd.Dir = r.o.WorkDir
	cmd.Env = append(r.childEnv(false), sess.Environ()...)
	ptyReq, winCh, isPty := sess.Pty()
	if isPty {
		cmd.Env = append(cmd.Env, "TERM="+ptyReq.Term)
		t, err := startPTY(cmd, uint16(ptyReq.Window.Width), uint16(ptyReq.Window.Height))
		if err != nil {
			fmt.Fprintln(sess.Stderr(), err)
			_ = sess.Exit(1)
			return
		}
		defer t.Close()
		go func() {
			for w := range winCh {
				t.Resize(uint16(w.Width), uint16(w.Height))
			}
		}()
		go func() { _, _ = io.Copy(t, sess) }()
		_, _ = io.Copy(sess, t)
	} else {
		// stdin through a pipe copied outside Wait: the session ends when
		// the command does, even if the client never closes its stdin.
		cmd.Stdout, cmd.Stderr = sess, sess.Stderr()
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		in, err := cmd.StdinPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintln(sess.Stderr(), err)
			_ = sess.Exit(127)
			return
		}
		go func() {
			_, _ = io.Copy(in, sess)
			_ = in.Close()
		}()
	}
	_ = cmd.Wait()
	code := 0
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
		if code < 0 {
			code = 255
		}
	}
	_ = sess.Exit(code)
}

// forwardTarget is the address a direct-tcpip request to host may be
// connected to: a loopback address of the kernel's own network
// namespace ("localhost" is 127.0.0.1, never looked up). In a
// host-network kernel loopback is the host's, so nothing is allowed.
func (r *Runner) forwardTarget(host string) (net.IP, bool) {
	if r.o.HostNetwork {
		return nil, false
	}
	if host == "localhost" {
		return net.IPv4(127, 0, 0, 1), true
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, false
	}
	return ip, true
}

// directTCPIP serves ssh -L within the kernel: the destination is
// checked by forwardTarget and dialled by address, so no name lookup
// can turn it into another host.
func (r *Runner) directTCPIP(_ *ssh.Server, _ *gossh.ServerConn, nc gossh.NewChannel, ctx ssh.Context) {
	var d struct {
		DestAddr   string
		DestPort   uint32
		OriginAddr string
		OriginPort uint32
	}
	if err := gossh.Unmarshal(nc.ExtraData(), &d); err != nil || d.DestPort == 0 || d.DestPort > 65535 {
		_ = nc.Reject(gossh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	ip, ok := r.forwardTarget(d.DestAddr)
	if !ok {
		r.log.Info("ssh forwarding refused", "destination", d.DestAddr, "port", d.DestPort)
		_ = nc.Reject(gossh.Prohibited, "forwarding is allowed to the kernel's own loopback only")
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(int(d.DestPort))))
	cancel()
	if err != nil {
		_ = nc.Reject(gossh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go gossh.DiscardRequests(reqs)
	go func() {
		defer ch.Close()
		defer conn.Close()
		_, _ = io.Copy(ch, conn)
	}()
	go func() {
		defer ch.Close()
		defer conn.Close()
		_, _ = io.Copy(conn, ch)
	}()
}

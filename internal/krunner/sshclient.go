package krunner

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"
)

// The runner doubles as a small OpenSSH-compatible client, installed as
// ssh in images that have none, so that "ssh sub1 hostname", MPI
// launchers (mpirun's rsh agent runs "ssh -x host orted …") and scripts
// work in any image of a cluster session. It reads ~/.ssh/config
// (Host, HostName, Port, User, IdentityFile, StrictHostKeyChecking,
// UserKnownHostsFile, ConnectTimeout) and the usual command-line flags;
// forwarding (-L, -R, -D, -J, -A) is refused with a clear message.

// sshOptions is one invocation's resolved settings.
type sshOptions struct {
	user, host, hostname string
	port                 int
	identities           []string
	strict               string // yes, no, accept-new, ask
	knownHosts           string
	connectTimeout       time.Duration
	command              string
	forcePTY, noPTY      bool
	nullStdin, noCommand bool
	quiet                bool
}

// sshValueFlags take a value (OpenSSH's getopt string).
const sshValueFlags = "BbcDEeFIiJLlmOoPpQRSWw"

// parseSSHArgs reads OpenSSH's command line. Config-file values fill what
// the command line left unset (the first value obtained wins).
func parseSSHArgs(args []string) (*sshOptions, []string, string, error) {
	o := &sshOptions{}
	var cliOpts []string // -o and flag-derived "Key value" lines
	configFile := ""
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			f := a[j]
			if strings.IndexByte(sshValueFlags, f) >= 0 {
				val := a[j+1:]
				if val == "" {
					i++
					if i >= len(args) {
						return nil, nil, "", fmt.Errorf("option requires an argument -- %c", f)
					}
					val = args[i]
				}
				switch f {
				case 'p':
					cliOpts = append(cliOpts, "Port "+val)
				case 'l':
					cliOpts = append(cliOpts, "User "+val)
				case 'i':
					o.identities = append(o.identities, val)
				case 'o':
					cliOpts = append(cliOpts, strings.Replace(val, "=", " ", 1))
				case 'F':
					configFile = val
				case 'L', 'R', 'D', 'J', 'W', 'w':
					return nil, nil, "", fmt.Errorf("-%c is not supported by this ssh (the kernel runner's built-in client); install openssh-client in the image for forwarding", f)
				}
				break
			}
			switch f {
			case 't':
				o.forcePTY = true
			case 'T':
				o.noPTY = true
			case 'n':
				o.nullStdin = true
			case 'N':
				o.noCommand = true
			case 'q':
				o.quiet = true
			case 'A':
				return nil, nil, "", errors.New("-A (agent forwarding) is not supported by this ssh (the kernel runner's built-in client)")
			case 'V':
				return nil, nil, "", errors.New("bai-krunner ssh client (OpenSSH-compatible subset)")
			case '4', '6', 'a', 'C', 'f', 'G', 'g', 'K', 'k', 'M', 's', 'v', 'X', 'x', 'Y', 'y':
				// Accepted and ignored: they change nothing this client does.
			default:
				return nil, nil, "", fmt.Errorf("unknown option -- %c", f)
			}
		}
	}
	if i >= len(args) {
		return nil, nil, "", errors.New("usage: ssh [-46nNqtTx] [-i identity_file] [-l login_name] [-o option] [-p port] [user@]host [command ...]")
	}
	dest := args[i]
	if rest, ok := strings.CutPrefix(dest, "ssh://"); ok {
		dest = rest
		if h, p, err := net.SplitHostPort(dest); err == nil {
			dest = h
			cliOpts = append([]string{"Port " + p}, cliOpts...)
		}
	}
	if at := strings.LastIndexByte(dest, '@'); at >= 0 {
		cliOpts = append([]string{"User " + dest[:at]}, cliOpts...)
		dest = dest[at+1:]
	}
	o.host = dest
	o.command = strings.Join(args[i+1:], " ")
	return o, cliOpts, configFile, nil
}

// sshConfigLines returns the "key value" lines of ssh_config that apply
// to host, in file order (Host blocks matched by pattern, with !negation).
func sshConfigLines(text, host string) [][2]string {
	var out [][2]string
	applies := true
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// "Key value", "Key=value" and "Key = value" are all allowed.
		idx := strings.IndexAny(line, " \t=")
		if idx < 0 {
			continue
		}
		key := strings.ToLower(line[:idx])
		val := strings.TrimSpace(line[idx:])
		val = strings.Trim(strings.TrimSpace(strings.TrimPrefix(val, "=")), `"`)
		if key == "host" {
			applies = hostMatches(strings.Fields(val), host)
			continue
		}
		if key == "match" {
			applies = false // Match blocks are not supported: skipped.
			continue
		}
		if applies {
			out = append(out, [2]string{key, val})
		}
	}
	return out
}

func hostMatches(patterns []string, host string) bool {
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if ok, _ := path.Match(p, host); ok {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// apply fills unset settings from "key value" lines; the first value of
// each key wins, as in OpenSSH (IdentityFile accumulates).
func (o *sshOptions) apply(lines [][2]string, home string) {
	seen := map[string]bool{}
	expand := func(v string) string {
		v = strings.ReplaceAll(v, "%h", o.host)
		v = strings.ReplaceAll(v, "%%", "%")
		if strings.HasPrefix(v, "~/") {
			v = filepath.Join(home, v[2:])
		}
		return v
	}
	for _, kv := range lines {
		k, v := kv[0], kv[1]
		if k == "identityfile" {
			o.identities = append(o.identities, expand(v))
			continue
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		switch k {
		case "hostname":
			o.hostname = expand(v)
		case "port":
			o.port, _ = strconv.Atoi(v)
		case "user":
			o.user = v
		case "stricthostkeychecking":
			o.strict = strings.ToLower(v)
		case "userknownhostsfile":
			o.knownHosts = expand(strings.Fields(v + " ")[0])
		case "connecttimeout":
			if n, err := strconv.Atoi(v); err == nil {
				o.connectTimeout = time.Duration(n) * time.Second
			}
		case "loglevel":
			if strings.EqualFold(v, "quiet") || strings.EqualFold(v, "error") || strings.EqualFold(v, "fatal") {
				o.quiet = true
			}
		}
	}
}

// SSHMain runs the client and returns its exit status: the remote
// command's, or 255 for the client's own errors (as OpenSSH).
func SSHMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ssh: %v\n", err)
		return 255
	}
	o, cliOpts, configFile, err := parseSSHArgs(args)
	if err != nil {
		return fail(err)
	}
	home, _ := os.UserHomeDir()
	if home == "" {
		home = "/home/work"
	}
	var lines [][2]string
	for _, l := range cliOpts {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		lines = append(lines, [2]string{strings.ToLower(k), strings.TrimSpace(v)})
	}
	if configFile == "" {
		configFile = filepath.Join(home, ".ssh", "config")
	}
	if b, err := os.ReadFile(configFile); err == nil {
		lines = append(lines, sshConfigLines(string(b), o.host)...)
	}
	o.apply(lines, home)
	if o.hostname == "" {
		o.hostname = o.host
	}
	if o.port == 0 {
		o.port = 22
	}
	if o.user == "" {
		if u, err := user.Current(); err == nil {
			o.user = u.Username
		} else {
			o.user = os.Getenv("USER")
		}
	}
	if len(o.identities) == 0 {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			o.identities = append(o.identities, filepath.Join(home, ".ssh", n))
		}
	}
	if o.knownHosts == "" {
		o.knownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	if o.connectTimeout == 0 {
		o.connectTimeout = 30 * time.Second
	}
	var signers []gossh.Signer
	for _, p := range o.identities {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s, err := gossh.ParsePrivateKey(b)
		if err != nil {
			if !o.quiet {
				fmt.Fprintf(stderr, "ssh: identity %s not loaded: %v\n", p, err)
			}
			continue
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		return fail(errors.New("no usable identity (give -i, or IdentityFile in ~/.ssh/config)"))
	}
	addr := net.JoinHostPort(o.hostname, strconv.Itoa(o.port))
	cli, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User:            o.user,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signers...)},
		HostKeyCallback: o.hostKeyCallback(stderr),
		Timeout:         o.connectTimeout,
	})
	if err != nil {
		return fail(fmt.Errorf("connect to host %s port %d: %v", o.hostname, o.port, err))
	}
	defer cli.Close()
	sess, err := cli.NewSession()
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	if o.nullStdin {
		stdin = strings.NewReader("")
	}
	// stdin is copied outside the session: Session.Wait would wait for
	// that copy, and a command must end when the remote side exits (as
	// with OpenSSH) even if local stdin stays open.
	sess.Stdout, sess.Stderr = stdout, stderr
	remoteIn, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	go func() {
		_, _ = io.Copy(remoteIn, stdin)
		_ = remoteIn.Close()
	}()
	in, _ := stdin.(*os.File)
	tty := in != nil && isTerminal(int(in.Fd()))
	if o.forcePTY || (o.command == "" && !o.noPTY && tty) {
		cols, rows := 80, 24
		if tty {
			if ws, err := unix.IoctlGetWinsize(int(in.Fd()), unix.TIOCGWINSZ); err == nil {
				cols, rows = int(ws.Col), int(ws.Row)
			}
			if restore, err := makeRaw(int(in.Fd())); err == nil {
				defer restore()
			}
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					if ws, err := unix.IoctlGetWinsize(int(in.Fd()), unix.TIOCGWINSZ); err == nil {
						_ = sess.WindowChange(int(ws.Row), int(ws.Col))
					}
				}
			}()
		}
		term := os.Getenv("TERM")
		if term == "" {
			term = "xterm"
		}
		if err := sess.RequestPty(term, rows, cols, gossh.TerminalModes{gossh.ECHO: 1}); err != nil {
			return fail(err)
		}
	}
	switch {
	case o.noCommand:
		return waitStatus(cli.Wait())
	case o.command != "":
		err = sess.Run(o.command)
	default:
		if err = sess.Shell(); err == nil {
			err = sess.Wait()
		}
	}
	return waitStatus(err)
}

// waitStatus maps a session's end to an exit status.
func waitStatus(err error) int {
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitStatus()
	case errors.Is(err, io.EOF):
		return 0
	default:
		return 255
	}
}

// hostKeyCallback checks host keys as StrictHostKeyChecking says: "no"
// accepts any key, "accept-new" records unknown hosts, and "yes"/"ask"
// (there is no prompt) accept only known ones. A changed key is refused
// unless checking is off.
func (o *sshOptions) hostKeyCallback(stderr io.Writer) gossh.HostKeyCallback {
	if o.strict == "no" || o.strict == "off" {
		return gossh.InsecureIgnoreHostKey()
	}
	return func(hostname string, remote net.Addr, key gossh.PublicKey) error {
		if _, err := os.Stat(o.knownHosts); os.IsNotExist(err) && o.knownHosts != os.DevNull {
			_ = os.MkdirAll(filepath.Dir(o.knownHosts), 0o700)
			_ = os.WriteFile(o.knownHosts, nil, 0o600)
		}
		cb, err := knownhosts.New(o.knownHosts)
		if err != nil {
			return err
		}
		err = cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 && o.strict == "accept-new" {
			f, ferr := os.OpenFile(o.knownHosts, os.O_APPEND|os.O_WRONLY, 0o600)
			if ferr != nil {
				return ferr
			}
			defer f.Close()
			_, ferr = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key))
			if !o.quiet {
				fmt.Fprintf(stderr, "Warning: Permanently added '%s' to the list of known hosts.\n", hostname)
			}
			return ferr
		}
		if err != nil {
			return fmt.Errorf("host key verification failed for %s (%v); use -o StrictHostKeyChecking=accept-new to trust a new host", hostname, err)
		}
		return nil
	}
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// makeRaw puts a terminal in raw mode and returns its restore.
func makeRaw(fd int) (func(), error) {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	old := *t
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, &old) }, nil
}

package krunner

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// writeClusterKey writes config/ssh/id_cluster{,.pub} as the agent does.
func writeClusterKey(t *testing.T, cfg string) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := gossh.NewPublicKey(pub)
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(cfg, "ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "ssh", "id_cluster"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "ssh", "id_cluster.pub"), gossh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClusterSSHConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		key      bool
		mapping  string
		replicas string
		want     []string // substrings, in order
		wantNil  bool
		wantErr  string
	}{
		{name: "no cluster key", wantNil: true},
		{name: "replicas", key: true, replicas: "main:1,sub:2", want: []string{"Host main*\n\tPort 2200\n", "IdentityFile ", "Host sub*\n\tPort 2200\n"}},
		{name: "default replicas", key: true, want: []string{"Host main*\n"}},
		{name: "host-network mapping", key: true, mapping: `{"node-b":["10.0.0.2",30022],"node-a":["10.0.0.1",30011]}`,
			want: []string{"Host node-a\n\tHostName 10.0.0.1\n\tPort 30011\n", "Host node-b\n\tHostName 10.0.0.2\n\tPort 30022\n"}},
		{name: "bad mapping", key: true, mapping: `{"node-a":["10.0.0.1"]}`, wantErr: "want [host, port]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := t.TempDir()
			if tc.key {
				writeClusterKey(t, cfg)
			}
			if tc.mapping != "" {
				_ = os.WriteFile(filepath.Join(cfg, "ssh", "port-mapping.json"), []byte(tc.mapping), 0o644)
			}
			got, err := clusterSSHConfig(cfg, func(k string) string {
				if k == "BACKENDAI_CLUSTER_REPLICAS" {
					return tc.replicas
				}
				return ""
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil != (got == nil) {
				t.Fatalf("got %q", got)
			}
			rest := string(got)
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q not found (in order) in:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

// The cluster block is rewritten in place at every start; the user's own
// entries stay, and the file stays private.
func TestPrepareClusterSSHKeepsUserEntries(t *testing.T) {
	work, cfg := t.TempDir(), t.TempDir()
	writeClusterKey(t, cfg)
	r := &Runner{o: Options{WorkDir: work, ConfigDir: cfg}, env: []string{"BACKENDAI_CLUSTER_REPLICAS=main:1,sub:1"}}
	_ = os.MkdirAll(filepath.Join(work, ".ssh"), 0o700)
	user := "Host mybox\n\tHostName example.org\n"
	if err := os.WriteFile(filepath.Join(work, ".ssh", "config"), []byte(user), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := r.prepareClusterSSH(); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(work, ".ssh", "config"))
	if n := strings.Count(string(b), "Host sub*"); n != 1 {
		t.Fatalf("cluster block written %d times:\n%s", n, b)
	}
	if !strings.HasSuffix(string(b), user) {
		t.Fatalf("user entry lost:\n%s", b)
	}
	st, _ := os.Stat(filepath.Join(work, ".ssh", "config"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestParseSSHArgs(t *testing.T) {
	for _, tc := range []struct {
		args    string
		host    string
		cmd     string
		opts    []string
		ids     []string
		tty     bool
		wantErr string
	}{
		{args: "sub1 hostname", host: "sub1", cmd: "hostname"},
		{args: "-p 2201 -i /k -o StrictHostKeyChecking=no work@h echo hi", host: "h", cmd: "echo hi", opts: []string{"User work", "Port 2201", "StrictHostKeyChecking no"}, ids: []string{"/k"}},
		{args: "-xTq -p2202 h orted --daemonize", host: "h", cmd: "orted --daemonize", opts: []string{"Port 2202"}},
		{args: "-t ssh://u@h:2222", host: "h", opts: []string{"User u", "Port 2222"}, tty: true},
		{args: "-L 8080:localhost:80 h", wantErr: "-L is not supported"},
		{args: "-p", wantErr: "requires an argument"},
		{args: "-Z h", wantErr: "unknown option"},
		{args: "-x", wantErr: "usage"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			o, opts, _, err := parseSSHArgs(strings.Fields(tc.args))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.host != tc.host || o.command != tc.cmd || o.forcePTY != tc.tty || !reflect.DeepEqual(o.identities, tc.ids) {
				t.Fatalf("got host %q cmd %q tty %v ids %v", o.host, o.command, o.forcePTY, o.identities)
			}
			if len(opts) != len(tc.opts) || (len(opts) > 0 && !reflect.DeepEqual(opts, tc.opts)) {
				t.Fatalf("opts %q, want %q", opts, tc.opts)
			}
		})
	}
}

// ssh_config: Host patterns with negation, the first value wins, and
// IdentityFile accumulates.
func TestSSHConfigLines(t *testing.T) {
	conf := `
# comment
Host sub* !sub9
	Port 2200
	IdentityFile /a
Host *
	Port=22
	User = work
	IdentityFile ~/.ssh/id_x
	HostName %h.cluster
`
	o := &sshOptions{host: "sub1"}
	o.apply(sshConfigLines(conf, "sub1"), "/home/u")
	if o.port != 2200 || o.user != "work" || o.hostname != "sub1.cluster" || !reflect.DeepEqual(o.identities, []string{"/a", "/home/u/.ssh/id_x"}) {
		t.Fatalf("sub1: %+v", o)
	}
	o = &sshOptions{host: "sub9"}
	o.apply(sshConfigLines(conf, "sub9"), "/home/u")
	if o.port != 22 {
		t.Fatalf("sub9 should not match sub* !sub9: port %d", o.port)
	}
}

// The client against the runner's own SSH server: the cluster key (not in
// authorized_keys) logs in, ~/.ssh/config from port-mapping.json names
// the host, output and exit status come back, a PTY is given on -t.
func TestSSHClientWithClusterKey(t *testing.T) {
	a := startRunner(t, "shell")
	waitSSHServer(t, a.r)
	cfg, work := a.r.o.ConfigDir, a.r.o.WorkDir
	writeClusterKey(t, cfg)
	port := a.r.o.SSHPorts[0]
	if err := os.WriteFile(filepath.Join(cfg, "ssh", "port-mapping.json"), []byte(fmt.Sprintf(`{"peer1":["127.0.0.1",%d]}`, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.r.prepareClusterSSH(); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(work, ".ssh", "config")
	var out, errb bytes.Buffer
	if code := SSHMain([]string{"-F", conf, "peer1", "echo", "hello-$((6*7))"}, strings.NewReader(""), &out, &errb); code != 0 || out.String() != "hello-42\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := SSHMain([]string{"-F", conf, "peer1", "cat; exit 3"}, strings.NewReader("piped\n"), &out, &errb); code != 3 || out.String() != "piped\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	// Local stdin left open (a runner's child): the command still ends
	// when the remote side exits.
	out.Reset()
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan int, 1)
	go func() { done <- SSHMain([]string{"-F", conf, "peer1", "echo open-stdin"}, pr, &out, &errb) }()
	select {
	case code := <-done:
		if code != 0 || out.String() != "open-stdin\n" {
			t.Fatalf("open stdin: exit %d, out %q", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ssh waited for local stdin after the remote command ended")
	}
	out.Reset()
	if code := SSHMain([]string{"-F", conf, "-t", "peer1", "test -t 0 && echo tty"}, strings.NewReader(""), &out, &errb); code != 0 || !strings.Contains(out.String(), "tty") {
		t.Fatalf("-t: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	// Another key is refused; an unknown host key is refused without
	// StrictHostKeyChecking=no.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := gossh.MarshalPrivateKey(other, "")
	otherKey := filepath.Join(t.TempDir(), "k")
	_ = os.WriteFile(otherKey, pem.EncodeToMemory(blk), 0o600)
	errb.Reset()
	if code := SSHMain([]string{"-F", "/dev/null", "-i", otherKey, "-o", "StrictHostKeyChecking=no", "-p", fmt.Sprint(port), "127.0.0.1", "true"}, strings.NewReader(""), &out, &errb); code != 255 || !strings.Contains(errb.String(), "unable to authenticate") {
		t.Fatalf("wrong key: exit %d, err %q", code, errb.String())
	}
	errb.Reset()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	key := filepath.Join(cfg, "ssh", "id_cluster")
	if code := SSHMain([]string{"-F", "/dev/null", "-i", key, "-o", "UserKnownHostsFile=" + kh, "-p", fmt.Sprint(port), "127.0.0.1", "true"}, strings.NewReader(""), &out, &errb); code != 255 || !strings.Contains(errb.String(), "host key verification failed") {
		t.Fatalf("unknown host: exit %d, err %q", code, errb.String())
	}
	// accept-new records it, and the next connection is checked against it.
	for i := 0; i < 2; i++ {
		if code := SSHMain([]string{"-F", "/dev/null", "-i", key, "-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=accept-new", "-p", fmt.Sprint(port), "127.0.0.1", "true"}, strings.NewReader(""), &out, &errb); code != 0 {
			t.Fatalf("accept-new #%d: exit %d, err %q", i, code, errb.String())
		}
	}
	if b, _ := os.ReadFile(kh); strings.Count(string(b), "ssh-ed25519") != 1 {
		t.Fatalf("known_hosts:\n%s", b)
	}
}

// waitSSHServer waits until Serve's start-up has bound the SSH server
// (startRunner returns before it has).
func waitSSHServer(t *testing.T, r *Runner) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		r.sshMu.Lock()
		up := r.ssh != nil
		r.sshMu.Unlock()
		if up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the SSH server did not start")
		}
		<-tick.C
	}
}

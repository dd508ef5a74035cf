package jupyter

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// debianPython is the interpreter with Debian's python3-jupyter-client
// (and python3-ipykernel) installed.
const debianPython = "/usr/bin/python3"

func requirePyModule(t *testing.T, mod string) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		testutil.Missing(t, "%s: %v", debianPython, err)
	}
	if out, err := exec.Command(debianPython, "-c", "import "+mod).CombinedOutput(); err != nil {
		testutil.Missing(t, "python module %s (apt-get install python3-jupyter-client python3-ipykernel): %s", mod, out)
	}
}

// pyFrames runs script (which prints a JSON list of base64 frames) and
// returns the frames.
func pyRun(t *testing.T, script string, args ...string) string {
	t.Helper()
	out, err := exec.Command(debianPython, append([]string{"-c", script}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestSignKnownVector(t *testing.T) {
	s := &Session{Key: []byte("key")}
	// HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231-style vector.
	got := s.Sign([]byte("The quick brown fox "), []byte("jumps over the lazy dog"))
	if want := "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"; got != want {
		t.Fatalf("sign = %s, want %s", got, want)
	}
	if (&Session{}).Sign([]byte("x")) != "" {
		t.Fatal("an empty key must sign with an empty string")
	}
}

func TestDecodePythonSession(t *testing.T) {
	requirePyModule(t, "jupyter_client")
	const script = `
import base64, json, sys
from jupyter_client.session import Session
s = Session(key=b"s3cret", session="sess-py", username="alice")
parent = s.msg("execute_request", content={"code": "1"})
m = s.msg("execute_result", content={"data": {"text/plain": "2", "image/png": "AAA="}, "execution_count": 1, "metadata": {}}, parent=parent)
frames = s.serialize(m, ident=[b"peer-1"])
print(json.dumps({"frames": [base64.b64encode(f).decode() for f in frames], "parent": parent["header"]["msg_id"], "id": m["header"]["msg_id"]}))
`
	var py struct {
		Frames []string `json:"frames"`
		Parent string   `json:"parent"`
		ID     string   `json:"id"`
	}
	if err := json.Unmarshal([]byte(pyRun(t, script)), &py); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for _, f := range py.Frames {
		b, _ := base64.StdEncoding.DecodeString(f)
		frames = append(frames, b)
	}
	s := &Session{Key: []byte("s3cret")}
	m, err := s.Deserialize(frames)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.MsgType != "execute_result" || m.Header.MsgID != py.ID || m.Header.Session != "sess-py" || m.Header.Username != "alice" || m.Parent.MsgID != py.Parent {
		t.Fatalf("header %+v parent %+v", m.Header, m.Parent)
	}
	if len(m.Identities) != 1 || string(m.Identities[0]) != "peer-1" {
		t.Fatalf("identities %q", m.Identities)
	}
	var c struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(m.Content, &c); err != nil || c.Data["text/plain"] != "2" {
		t.Fatalf("content %s %v", m.Content, err)
	}
	// Tampered content or the wrong key: refused.
	bad := append([][]byte{}, frames...)
	bad[len(bad)-1] = []byte(`{"data":{}}`)
	if _, err := s.Deserialize(bad); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := (&Session{Key: []byte("other")}).Deserialize(frames); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestPythonSessionDecodesOurs(t *testing.T) {
	requirePyModule(t, "jupyter_client")
	s := NewSession([]byte("k3y"), "bob")
	parent := Header{MsgID: "p-1", Session: "x", MsgType: "input_request", Version: ProtocolVersion}
	m, err := s.New("input_reply", map[string]any{"value": "héllo", "status": "ok"}, &parent)
	if err != nil {
		t.Fatal(err)
	}
	m.Identities = [][]byte{[]byte("id0")}
	frames, err := s.Serialize(m)
	if err != nil {
		t.Fatal(err)
	}
	var enc []string
	for _, f := range frames {
		enc = append(enc, base64.StdEncoding.EncodeToString(f))
	}
	arg, _ := json.Marshal(enc)
	const script = `
import base64, json, sys
from jupyter_client.session import Session
s = Session(key=b"k3y")
frames = [base64.b64decode(f) for f in json.loads(sys.argv[1])]
idents, rest = s.feed_identities(frames)
m = s.deserialize(rest)
print(json.dumps({"idents": [i.decode() for i in idents], "type": m["msg_type"], "parent": m["parent_header"]["msg_id"], "content": m["content"], "user": m["header"]["username"], "date": str(m["header"]["date"].tzinfo is not None)}))
`
	var got struct {
		Idents  []string          `json:"idents"`
		Type    string            `json:"type"`
		Parent  string            `json:"parent"`
		Content map[string]string `json:"content"`
		User    string            `json:"user"`
		Date    string            `json:"date"`
	}
	if err := json.Unmarshal([]byte(pyRun(t, script, string(arg))), &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "input_reply" || got.Parent != "p-1" || got.Content["value"] != "héllo" || got.User != "bob" || len(got.Idents) != 1 || got.Idents[0] != "id0" || got.Date != "True" {
		t.Fatalf("python decoded %+v", got)
	}
	// With a wrong key Python refuses it too.
	const refuse = `
import base64, json, sys
from jupyter_client.session import Session
s = Session(key=b"nope")
frames = [base64.b64decode(f) for f in json.loads(sys.argv[1])]
try:
    s.deserialize(s.feed_identities(frames)[1])
    print("accepted")
except ValueError:
    print("refused")
`
	if out := pyRun(t, refuse, string(arg)); out != "refused" {
		t.Fatalf("python with the wrong key: %s", out)
	}
}

func TestFindSpec(t *testing.T) {
	home, sys := t.TempDir(), t.TempDir()
	write := func(root, name, body string) {
		t.Helper()
		d := root + "/kernels/" + name
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d+"/kernel.json", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(sys, "ir", `{"argv":["R"],"language":"R"}`)
	write(sys, "python3", `{"argv":["python3","-m","ipykernel_launcher","-f","{connection_file}"],"interrupt_mode":"message"}`)
	write(home, "python-broken", `{"argv":[]}`)
	dirs := []string{home, sys}
	s, err := FindSpec(dirs, "python")
	if err != nil || s.Name != "python3" || s.InterruptMode != "message" || s.Argv[0] != "python3" {
		t.Fatalf("spec %+v %v", s, err)
	}
	// An earlier directory's spec of the same name wins.
	write(home, "python3", `{"argv":["/opt/py/bin/python","-m","ipykernel_launcher","-f","{connection_file}"]}`)
	if s, _ = FindSpec(dirs, "python"); s.Argv[0] != "/opt/py/bin/python" {
		t.Fatalf("precedence: %+v", s)
	}
	if _, err := FindSpec(dirs, "julia"); !errors.Is(err, ErrNoSpec) {
		t.Fatalf("julia: %v", err)
	}
	got := DataDirs([]string{"HOME=/h", "JUPYTER_PATH=/a:/b"}, "/opt/conda")
	want := []string{"/h/.local/share/jupyter", "/a", "/b", "/opt/conda/share/jupyter", "/usr/local/share/jupyter", "/usr/share/jupyter"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("DataDirs = %v", got)
	}
}

func TestConnInfoPorts(t *testing.T) {
	c, err := NewConnInfo("127.0.0.1", "python3")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range []int{c.ShellPort, c.IOPubPort, c.StdinPort, c.ControlPort, c.HBPort} {
		if p < PortRange[0] || p > PortRange[1] || seen[p] {
			t.Fatalf("ports %+v", c)
		}
		seen[p] = true
	}
	if len(c.Key) != 64 || c.SignatureScheme != "hmac-sha256" || c.Transport != "tcp" {
		t.Fatalf("conn info %+v", c)
	}
}

package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The notebook app end to end (test/pypeer/manager_notebook_flow.py): a
// Backend.AI python image made of this host's Debian Jupyter Notebook
// (testutil.NotebookImage), created the way the manager creates it (a
// vfolder mounted rw, the user's uid, internal_data.ssh_keypair),
// start_service("jupyter"), then Jupyter's REST API and kernel websocket
// through the host port as the app proxy reaches it: a cell runs, a
// notebook saved through the contents API lands in the vfolder owned by
// the kernel's uid, and headless Chromium renders the tree and the
// notebook page (screenshot paths in the log).
func TestNotebookApp_Integration(t *testing.T) {
	py := managerPeerPython(t)
	if err := exec.Command(py, "-c", "import websocket").Run(); err != nil {
		testutil.Missing(t, "python3-websocket (apt-get install python3-websocket)")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testutil.Missing(t, "chromium (apt-get install chromium)")
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		testutil.Missing(t, "ssh-keygen (apt-get install openssh-client)")
	}
	img := testutil.NotebookImage(t)
	s := newStack(t, "")
	s.start()
	shots, err := os.MkdirTemp("", "bai-notebook-shots-")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_notebook_flow.py")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, "tcp://"+s.rpc, s.redis.Addr, s.id, img, s.vfroot, chromium, shots).CombinedOutput()
	t.Logf("notebook flow:\n%s", out)
	if err != nil {
		t.Fatalf("notebook flow failed: %v", err)
	}
	if !strings.Contains(string(out), "all checks passed") {
		t.Fatal("the notebook flow did not finish")
	}
	t.Logf("notebook screenshots: %s, %s", filepath.Join(shots, "bai-notebook-tree.png"), filepath.Join(shots, "bai-notebook-page.png"))
}

package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A multi-node session over a Docker swarm overlay network: a swarm
// engine owned by the test (never the machine's own), two agent
// processes on it with two ids and two RPC ports as two nodes would be,
// and a Python manager peer that creates main1 on one and sub1 on the
// other with the overlay network_config and the session SSH key, then
// runs "ssh sub1 hostname" on main1 through execute.
func TestMultiNodeOverlayCluster_Integration(t *testing.T) {
	py := managerPeerPython(t)
	eng := testutil.StartEngine(t, false)
	eng.InitSwarm()
	img := eng.ImportTestImageWith(map[string]string{"ai.backend.runtime-type": "shell"})
	// What the manager's overlay plugin does on the swarm manager.
	sid := uuid.NewString()
	netName := "bai-multinode-" + sid
	netID := eng.Docker("network", "create", "--driver", "overlay", "--attachable", "--label", "ai.backend.cluster-network=1", netName)
	// dockerd makes docker_gwbridge shortly after the first overlay.
	var gw string
	testutil.Eventually(t, 30*time.Second, "docker_gwbridge exists", func() bool {
		o, err := exec.Command("docker", "-H", eng.Host, "network", "inspect", "docker_gwbridge", "--format", "{{(index .IPAM.Config 0).Subnet}}").Output()
		gw = strings.TrimSpace(string(o))
		return err == nil && gw != ""
	})

	env := []string{"DOCKER_HOST=" + eng.Host}
	a := newStackWith(t, "", stackOpts{portRange: [2]int{28200, 28239}, env: env})
	b := newStackWith(t, "", stackOpts{redis: a.redis, etcd: a.etcd, ns: a.ns, portRange: [2]int{28240, 28279}, env: env})
	a.start()
	b.start()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := gossh.NewPublicKey(&key.PublicKey)
	dir := t.TempDir()
	privFile, pubFile := filepath.Join(dir, "id_cluster"), filepath.Join(dir, "id_cluster.pub")
	_ = os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	_ = os.WriteFile(pubFile, gossh.MarshalAuthorizedKey(pub), 0o644)

	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_cluster_flow.py")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, "tcp://"+a.rpc, "tcp://"+b.rpc, a.redis.Addr, a.id, b.id, img, a.vfroot, b.vfroot,
		netName, netID, gw, privFile, pubFile).CombinedOutput()
	t.Logf("manager cluster flow:\n%s", out)
	if err != nil {
		t.Fatalf("manager cluster flow failed: %v", err)
	}
	if !strings.Contains(string(out), "all checks passed") {
		t.Fatal("the manager cluster flow did not finish")
	}
	// Both agents released everything; the overlay network is the
	// manager's to remove (destroy_network), so it is still there.
	if got := eng.Docker("ps", "-aq"); got != "" {
		t.Fatalf("containers left on the swarm engine: %s", got)
	}
	eng.Docker("network", "inspect", netName)
}

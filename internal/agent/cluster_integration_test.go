package agent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// clusterKeypair is an RSA pair as the manager's
// _create_cluster_ssh_keypair makes it (PKCS#1 PEM, OpenSSH public line).
func clusterKeypair(t *testing.T) *SSHKeypair {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := gossh.NewPublicKey(&k.PublicKey)
	return &SSHKeypair{
		PublicKey:  strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))),
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})),
	}
}

// clusterConfigs are the creation configs of one session's kernels, with
// the BACKENDAI_CLUSTER_* environment the manager's launcher sets.
func (e *env) clusterConfigs(sid, img string, hosts []string, mutate func(i int, c *CreationConfig)) ([]string, []CreationConfig) {
	replicas := map[string]int{}
	for _, h := range hosts {
		replicas[strings.TrimRight(h, "0123456789")]++
	}
	var rs []string
	for _, role := range []string{"main", "sub"} {
		if n := replicas[role]; n > 0 {
			rs = append(rs, fmt.Sprintf("%s:%d", role, n))
		}
	}
	var ids []string
	var cfgs []CreationConfig
	for i, h := range hosts {
		kid := uuid.NewString()
		role := strings.TrimRight(h, "0123456789")
		idx := 0
		_, _ = fmt.Sscanf(strings.TrimPrefix(h, role), "%d", &idx)
		c := e.request(kid, nil).Configs[0]
		c.SessionID, c.Image.Canonical = sid, img
		c.ClusterRole, c.ClusterIdx, c.ClusterHostname = role, idx, h
		c.Environ = map[string]string{
			"BACKENDAI_SESSION_ID": sid, "BACKENDAI_CLUSTER_SIZE": fmt.Sprint(len(hosts)),
			"BACKENDAI_CLUSTER_REPLICAS": strings.Join(rs, ","), "BACKENDAI_CLUSTER_HOSTS": strings.Join(hosts, ","),
			"BACKENDAI_CLUSTER_ROLE": role, "BACKENDAI_CLUSTER_IDX": fmt.Sprint(idx), "BACKENDAI_CLUSTER_HOST": h,
		}
		if mutate != nil {
			mutate(i, &c)
		}
		ids, cfgs = append(ids, kid), append(cfgs, c)
	}
	return ids, cfgs
}

func networkGone(t *testing.T, be backend.Networks, name string) bool {
	t.Helper()
	_, err := be.InspectNetwork(context.Background(), name)
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("inspect network %s: %v", name, err)
	}
	return err != nil
}

// A 3-kernel single-node session as the manager starts it
// (create_local_network, then one create_kernels with cluster_info):
// every kernel on the session network under its cluster hostname, the
// session key in config/ssh, and from main1 "ssh sub1 hostname" works
// with no prompt in a busybox image. When the last kernel is gone the
// agent removes the network it created. (Kernels take whole cores; this
// machine has two, so cores are overcommitted twice.)
func TestSingleNodeClusterSSH_Integration(t *testing.T) {
	t.Setenv("BACKEND_CPU_OVERCOMMIT_FACTOR", "2")
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sid := uuid.NewString()
	netName := "bai-singlenode-" + sid
	if err := e.agent.CreateLocalNetwork(ctx, netName); err != nil {
		t.Fatal(err)
	}
	uid := 1500
	ids, cfgs := e.clusterConfigs(sid, img, []string{"main1", "sub1", "sub2"}, func(_ int, c *CreationConfig) { c.UID, c.MainGID = &uid, &uid })
	kp := clusterKeypair(t)
	infos, err := e.agent.CreateKernels(ctx, &CreateRequest{SessionID: sid, KernelIDs: ids, Configs: cfgs,
		Cluster: ClusterInfo{Mode: "single-node", Size: 3, Replicas: map[string]int{"main": 1, "sub": 2}, NetworkMode: "bridge", NetworkName: netName, SSHKeypair: kp}})
	if err != nil {
		t.Fatal(err)
	}
	// The main kernel's services only on the main kernel (the image's
	// labelled "jupyter" service is not on the subs).
	for i, info := range infos {
		var names []string
		for _, sp := range info.ServicePorts {
			names = append(names, sp.Name)
		}
		if has := strings.Contains(strings.Join(names, ","), "jupyter"); has != (i == 0) {
			t.Fatalf("kernel %d services %v", i, names)
		}
	}
	if code, out := testutil.Exec(ctx, e.be, infos[1].ContainerID, "cat", "/home/config/ssh/id_cluster.pub"); code != 0 || strings.TrimSpace(out) != kp.PublicKey {
		t.Fatalf("id_cluster.pub in sub1: %d %q", code, out)
	}
	res := e.exec(ids[0], "c1", "query", "ssh sub1 hostname && ssh sub2 hostname && ssh sub1 'id -u; echo $BACKENDAI_CLUSTER_HOST'", flushIn(60*time.Second))
	if res["status"] != "finished" || res["exitCode"] != 0 || console(res, "stdout") != "sub1\nsub2\n1500\nsub1\n" {
		t.Fatalf("ssh from main1: %v", res)
	}
	// And back: sub2 reaches main1.
	res = e.exec(ids[2], "c2", "query", "ssh main1 hostname", flushIn(60*time.Second))
	if console(res, "stdout") != "main1\n" {
		t.Fatalf("ssh from sub2: %v", res)
	}
	for i, kid := range ids {
		if networkGone(t, e.be, netName) {
			t.Fatalf("the network went with %d kernels left", len(ids)-i)
		}
		if err := e.agent.DestroyKernel(ctx, kid, sid, "", false); err != nil {
			t.Fatal(err)
		}
	}
	if !networkGone(t, e.be, netName) {
		t.Fatal("the session network outlived its kernels")
	}
}

// The agent is SIGKILLed after it made the session network and the first
// kernel; the next agent adopts that kernel, creates the second on the
// same network, and once both are destroyed the network is gone.
func TestClusterNetworkAfterSIGKILL_Integration(t *testing.T) {
	e := newEnv(t, nil)
	e.agent.Close()
	e.agent = nil
	cfgPath := e.configFile()
	sid, main := uuid.NewString(), uuid.NewString()
	netName := "bai-singlenode-" + sid
	t.Cleanup(func() { _ = e.be.RemoveNetwork(context.Background(), netName) })
	runHelperAndKill(t, cfgPath, main, e.image, "BAI_HELPER_NETWORK="+netName, "BAI_HELPER_SESSION="+sid)
	e.agent = e.start()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if k, ok := e.agent.Kernel(main); !ok || k.Network != netName {
		t.Fatalf("adopted kernel: %v %+v", ok, k)
	}
	ids, cfgs := e.clusterConfigs(sid, e.image, []string{"sub1"}, nil)
	if _, err := e.agent.CreateKernels(ctx, &CreateRequest{SessionID: sid, KernelIDs: ids, Configs: cfgs,
		Cluster: ClusterInfo{Mode: "single-node", Size: 2, NetworkMode: "bridge", NetworkName: netName}}); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{main, ids[0]} {
		if networkGone(t, e.be, netName) {
			t.Fatal("network removed while a kernel still uses it")
		}
		if err := e.agent.DestroyKernel(ctx, kid, sid, "", false); err != nil {
			t.Fatal(err)
		}
	}
	if !networkGone(t, e.be, netName) {
		t.Fatal("the session network outlived its kernels")
	}
}

// A host-network session: the container shares the host's namespace, the
// runner binds the host ports the agent chose (intrinsic-ports.json),
// sshd takes the port the manager assigned in cluster_ssh_port_mapping,
// the peers' names are in /etc/hosts, and the cluster key logs in there.
func TestHostNetworkSession_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sid := uuid.NewString()
	// What the manager does first: assign_port on each kernel's agent.
	p1, err := e.agent.AssignPort()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.agent.AssignPort()
	if err != nil {
		t.Fatal(err)
	}
	p3, err := e.agent.AssignPort()
	if err != nil {
		t.Fatal(err)
	}
	ids, cfgs := e.clusterConfigs(sid, img, []string{"main1", "sub1"}, nil)
	cfgs[0].AllocatedHostPorts = []int{p3}
	mapping := map[string]HostPort{"node-" + ids[0]: {Host: "127.0.0.1", Port: p1}, "node-" + ids[1]: {Host: "127.0.0.1", Port: p2}}
	// The manager's launcher keys the mapping by "node-<kernel id>" while
	// the kernels keep their main1/sub1 hostnames; each kernel's sshd
	// takes the port assigned under its key.
	infos, err := e.agent.CreateKernels(ctx, &CreateRequest{SessionID: sid, KernelIDs: ids, Configs: cfgs,
		Cluster: ClusterInfo{Mode: "single-node", Size: 2, Replicas: map[string]int{"main": 1, "sub": 1}, NetworkMode: "host", SSHKeypair: clusterKeypair(t), SSHPortMapping: mapping}})
	if err != nil {
		t.Fatal(err)
	}
	ins, err := e.be.Inspect(ctx, infos[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins.Ports) != 0 {
		t.Fatalf("host-network kernel publishes ports: %+v", ins.Ports)
	}
	for i, info := range infos {
		for _, sp := range info.ServicePorts {
			if sp.Name == "sshd" && sp.HostPorts[0] != mapping["node-"+ids[i]].Port {
				t.Fatalf("kernel %d sshd host port %v, assigned %d", i, sp.HostPorts, mapping["node-"+ids[i]].Port)
			}
		}
		k, _ := e.agent.Kernel(info.ID)
		b, _ := os.ReadFile(filepath.Join(k.Spec().Scratch.Config, "intrinsic-ports.json"))
		var ip map[string]int
		if err := json.Unmarshal(b, &ip); err != nil || ip["replin"] != info.ReplInPort || ip["sshd"] != mapping["node-"+ids[i]].Port {
			t.Fatalf("intrinsic-ports.json %s: %v", b, err)
		}
	}
	// allocated_host_ports: an internal "hostport1" entry on the main
	// kernel, the same number inside and out, not shown to the manager.
	k0, _ := e.agent.Kernel(ids[0])
	found := false
	for _, sp := range k0.Spec().Services {
		if sp.Name == "hostport1" && sp.Protocol == "internal" && sp.HostPorts[0] == p3 && sp.ContainerPorts[0] == p3 {
			found = true
		}
	}
	for _, sp := range infos[0].ServicePorts {
		if sp.Name == "hostport1" {
			t.Fatal("an internal hostport entry is in the creation result")
		}
	}
	if !found {
		t.Fatalf("no hostport1 entry: %+v", k0.Spec().Services)
	}
	// The runner answers on the host ports (execute goes through them).
	res := e.exec(ids[0], "h1", "query", "ssh node-"+ids[1]+" 'echo from-$BACKENDAI_CLUSTER_HOST'; grep -c node- /etc/hosts", flushIn(60*time.Second))
	if res["status"] != "finished" || console(res, "stdout") != "from-sub1\n2\n" {
		t.Fatalf("ssh over the host network: %v", res)
	}
	for _, kid := range ids {
		if err := e.agent.DestroyKernel(ctx, kid, sid, "", false); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.agent.Ports().InUse(); n != 0 {
		t.Fatalf("%d host ports leaked (the assigned sshd ports go back with the kernels)", n)
	}
}

package agent

// Cluster sessions on the fake runtime: session networks (create,
// destroy, the sweep of unused ones), the network a kernel joins (bridge,
// overlay, the host's), host-network ports, the cluster SSH files and the
// user's files written into a new kernel.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/fake"
)

// unitNetBackend is the fake runtime with networks, and a record of the
// container specs it was given.
type unitNetBackend struct {
	*fake.Backend
	mu    sync.Mutex
	nets  map[string]backend.Network
	specs map[string]backend.ContainerSpec // by container name
}

func newUnitNetBackend(be *fake.Backend) *unitNetBackend {
	return &unitNetBackend{Backend: be, nets: map[string]backend.Network{}, specs: map[string]backend.ContainerSpec{}}
}

func (n *unitNetBackend) Create(ctx context.Context, spec *backend.ContainerSpec) (string, error) {
	id, err := n.Backend.Create(ctx, spec)
	if err == nil {
		n.mu.Lock()
		n.specs[id] = *spec
		n.mu.Unlock()
	}
	return id, err
}

func (n *unitNetBackend) spec(t *testing.T, id string) backend.ContainerSpec {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.specs[id]
	if !ok {
		t.Fatalf("no container %s was created", id)
	}
	return s
}

func (n *unitNetBackend) CreateNetwork(_ context.Context, name string, labels map[string]string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nets[name]; !ok {
		n.nets[name] = backend.Network{ID: "net-" + name, Name: name, Driver: "bridge", Labels: labels, Created: time.Now()}
	}
	return nil
}

func (n *unitNetBackend) RemoveNetwork(_ context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.nets, name)
	return nil
}

func (n *unitNetBackend) ListNetworks(_ context.Context, labels map[string]string) ([]backend.Network, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []backend.Network
	for _, nw := range n.nets {
		match := true
		for k, v := range labels {
			if nw.Labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, nw)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (n *unitNetBackend) InspectNetwork(_ context.Context, name string) (*backend.Network, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nw, ok := n.nets[name]
	if !ok {
		return nil, backend.ErrNotFound
	}
	return &nw, nil
}

func (n *unitNetBackend) put(nw backend.Network) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nets[nw.Name] = nw
}

func (n *unitNetBackend) names() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name := range n.nets {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func newNetCore(t *testing.T) (*core, *unitNetBackend) {
	t.Helper()
	var nb *unitNetBackend
	c := newCore(t, nil, func(o *Options) {
		nb = newUnitNetBackend(o.Backend.(*fake.Backend))
		o.Backend = nb
	})
	return c, nb
}

func createIn(c *core, cluster ClusterInfo, mutate func(*CreationConfig)) (*KernelInfo, error) {
	req := fakeRequest(uuid.NewString(), mutate)
	req.Cluster = cluster
	res, err := c.agent.CreateKernels(context.Background(), req)
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

func TestSessionNetworks_Fake(t *testing.T) {
	t.Parallel()
	c, nb := newNetCore(t)
	ctx := context.Background()
	if err := c.agent.CreateLocalNetwork(ctx, "sess-a"); err != nil {
		t.Fatal(err)
	}
	if err := c.agent.CreateLocalNetwork(ctx, "sess-a"); err != nil {
		t.Fatalf("creating an existing network: %v", err)
	}
	nw, err := nb.InspectNetwork(ctx, "sess-a")
	if err != nil || nw.Labels[LabelClusterNetwork] != "1" || nw.Labels[LabelNetworkOwner] != c.cfg.Agent.ID {
		t.Fatalf("network %+v %v", nw, err)
	}
	// A kernel joins it under its cluster hostname.
	info, err := createIn(c, ClusterInfo{NetworkName: "sess-a"}, func(r *CreationConfig) { r.ClusterRole, r.ClusterIdx = "main", 1 })
	if err != nil {
		t.Fatal(err)
	}
	spec := nb.spec(t, info.ContainerID)
	if spec.Network != "sess-a" || strings.Join(spec.NetworkAliases, ",") != "main1" {
		t.Fatalf("network %q aliases %v", spec.Network, spec.NetworkAliases)
	}
	// Networks of other agents, busy ones and new ones are kept by the
	// sweep; an old unused one of this agent goes.
	own := map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: c.cfg.Agent.ID}
	old := time.Now().Add(-time.Hour)
	nb.put(backend.Network{Name: "old-unused", Labels: own, Created: old})
	nb.put(backend.Network{Name: "old-busy", Labels: own, Created: old, Containers: 1})
	nb.put(backend.Network{Name: "new-unused", Labels: own, Created: time.Now()})
	nb.put(backend.Network{Name: "other-agent", Labels: map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: "i-other"}, Created: old})
	if err := c.agent.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(nb.names(), ","); got != "new-unused,old-busy,other-agent,sess-a" {
		t.Fatalf("networks after the sweep: %s", got)
	}
	// The kernel's own network goes with its last kernel, young as it is.
	k, _ := c.agent.Kernel(info.ID)
	if err := c.agent.DestroyKernel(ctx, info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(nb.names(), ","); got != "new-unused,old-busy,other-agent" {
		t.Fatalf("networks after the kernel left: %s", got)
	}
	if err := c.agent.DestroyLocalNetwork(ctx, "new-unused"); err != nil {
		t.Fatal(err)
	}
	if err := c.agent.DestroyLocalNetwork(ctx, "never-existed"); err != nil {
		t.Fatalf("removing a missing network: %v", err)
	}
	if got := strings.Join(nb.names(), ","); got != "old-busy,other-agent" {
		t.Fatalf("networks at the end: %s", got)
	}
}

// A runtime without networks says so.
func TestNetworksUnsupported_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	ctx := context.Background()
	if err := c.agent.CreateLocalNetwork(ctx, "n"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("create: %v", err)
	}
	if err := c.agent.DestroyLocalNetwork(ctx, "n"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("destroy: %v", err)
	}
	// The sweep of the sync pass is skipped quietly.
	if err := c.agent.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
}

// An overlay kernel joins the overlay network with its interface name,
// and Open MPI is told to avoid the swarm's gateway bridge.
func TestOverlayNetwork_Fake(t *testing.T) {
	t.Parallel()
	c, nb := newNetCore(t)
	nb.put(backend.Network{Name: "docker_gwbridge", Subnets: []string{"172.18.0.0/16"}})
	if _, err := createIn(c, ClusterInfo{NetworkMode: "overlay"}, nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "network_name is required") {
		t.Fatalf("overlay without a name: %v", err)
	}
	if _, err := createIn(c, ClusterInfo{NetworkMode: "weave", NetworkName: "w"}, nil); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "not loaded") {
		t.Fatalf("unknown network mode: %v", err)
	}
	info, err := createIn(c, ClusterInfo{NetworkMode: "overlay", NetworkName: "ov-1"}, func(r *CreationConfig) { r.ClusterHostname = "worker-7" })
	if err != nil {
		t.Fatal(err)
	}
	spec := nb.spec(t, info.ContainerID)
	if spec.Network != "ov-1" || strings.Join(spec.NetworkAliases, ",") != "worker-7" || spec.NetworkDriverOpts["com.docker.network.endpoint.ifname"] != overlayIfname {
		t.Fatalf("overlay spec: %q %v %v", spec.Network, spec.NetworkAliases, spec.NetworkDriverOpts)
	}
	found := false
	for _, e := range spec.Env {
		if e == "OMPI_MCA_btl_tcp_if_exclude=127.0.0.1/32,172.18.0.0/16" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no OMPI exclusion in %v", spec.Env)
	}
	c.assertNothingTakenBut(1)
}

// assertNothingTakenBut checks that exactly n kernels are registered.
func (c *core) assertNothingTakenBut(n int) {
	c.t.Helper()
	if got := len(c.agent.Kernels()); got != n {
		c.t.Fatalf("%d kernels registered, want %d", got, n)
	}
}

// A host-network kernel: the REPL, sshd and ttyd take pool ports (sshd
// the one the manager assigned when there is one), other services bind
// their own port number, and the runner is told which ports to bind.
func TestHostNetworkKernel_Fake(t *testing.T) {
	t.Parallel()
	c, nb := newNetCore(t)
	assigned, err := c.agent.AssignPort()
	if err != nil {
		t.Fatal(err)
	}
	kid := uuid.NewString()
	cluster := ClusterInfo{
		NetworkMode: "host", Mode: "multi-node", Size: 2,
		SSHKeypair: &SSHKeypair{PublicKey: "ssh-ed25519 AAAA cluster\n", PrivateKey: "-----BEGIN KEY-----\nxyz\n-----END KEY-----"},
		SSHPortMapping: map[string]HostPort{
			"node-" + kid: {Host: "10.0.0.1", Port: assigned},
			"sub1":        {Host: "10.0.0.2", Port: 2201},
		},
	}
	req := fakeRequest(kid, func(r *CreationConfig) { r.AllocatedHostPorts = []int{24001} })
	req.Cluster = cluster
	res, err := c.agent.CreateKernels(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	info := res[0]
	spec := nb.spec(t, info.ContainerID)
	if spec.Network != "host" || len(spec.Ports) != 0 {
		t.Fatalf("host network spec: %q ports %v", spec.Network, spec.Ports)
	}
	if got := strings.Join(spec.ExtraHosts, ","); got != "node-"+kid+":10.0.0.1,sub1:10.0.0.2" {
		t.Fatalf("extra hosts %s", got)
	}
	ports := map[string][]int{}
	for _, sp := range info.ServicePorts {
		ports[sp.Name] = sp.HostPorts
	}
	if len(ports["sshd"]) != 1 || ports["sshd"][0] != assigned {
		t.Fatalf("sshd host ports %v, want the assigned %d", ports["sshd"], assigned)
	}
	if len(ports["jupyter"]) != 1 || ports["jupyter"][0] != 8080 {
		t.Fatalf("jupyter host ports %v", ports["jupyter"])
	}
	if _, ok := ports["hostport1"]; ok {
		t.Fatal("an internal host port is shown")
	}
	lo, hi := c.cfg.Container.PortRange[0], c.cfg.Container.PortRange[1]
	if len(ports["ttyd"]) != 1 || ports["ttyd"][0] < lo || ports["ttyd"][0] > hi || info.ReplInPort < lo || info.ReplOutPort > hi {
		t.Fatalf("pool ports: ttyd %v repl %d/%d", ports["ttyd"], info.ReplInPort, info.ReplOutPort)
	}
	// The runner's files.
	cfgDir := unitMountSource(t, c, info.ContainerID, "/home/config")
	var intrinsic map[string]int
	unitReadJSON(t, filepath.Join(cfgDir, "intrinsic-ports.json"), &intrinsic)
	if intrinsic["replin"] != info.ReplInPort || intrinsic["replout"] != info.ReplOutPort || intrinsic["sshd"] != assigned || intrinsic["ttyd"] != ports["ttyd"][0] {
		t.Fatalf("intrinsic ports %v", intrinsic)
	}
	var mapping map[string]HostPort
	unitReadJSON(t, filepath.Join(cfgDir, "ssh", "port-mapping.json"), &mapping)
	if mapping["sub1"] != (HostPort{"10.0.0.2", 2201}) || len(mapping) != 2 {
		t.Fatalf("port mapping %v", mapping)
	}
	priv, err := os.ReadFile(filepath.Join(cfgDir, "ssh", "id_cluster"))
	if err != nil || string(priv) != cluster.SSHKeypair.PrivateKey+"\n" {
		t.Fatalf("private key %q %v", priv, err)
	}
	if st, _ := os.Stat(filepath.Join(cfgDir, "ssh", "id_cluster")); st == nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st)
	}
	pub, _ := os.ReadFile(filepath.Join(cfgDir, "ssh", "id_cluster.pub"))
	if string(pub) != "ssh-ed25519 AAAA cluster\n" {
		t.Fatalf("public key %q", pub)
	}
	// The assigned port is the kernel's now: it goes back with it.
	k, _ := c.agent.Kernel(info.ID)
	if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	c.assertNothingTaken("after the host-network kernel")
}

func unitReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestHostPortJSON_Fake(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(map[string]HostPort{"a": {"h", 22}})
	if err != nil || string(b) != `{"a":["h",22]}` {
		t.Fatalf("marshal %s %v", b, err)
	}
	for _, tc := range []struct {
		in   string
		want string
	}{
		{`["h"]`, "want 2 items"},
		{`{"h":1}`, "cannot unmarshal"},
		{`[1, 2]`, "cannot unmarshal"},
		{`["h", "x"]`, "cannot unmarshal"},
	} {
		var hp HostPort
		if err := json.Unmarshal([]byte(tc.in), &hp); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.in, err, tc.want)
		}
	}
}

// The user's SSH keypair and dotfiles are written into the new kernel's
// work folder; a dotfile outside /home/work is left out, and the user's
// own id_rsa wins.
func TestUserFiles_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(func(r *CreationConfig) {
		r.InternalData = map[string]any{
			"ssh_keypair": map[string]any{"public_key": "ssh-rsa PUB", "private_key": "PRIV"},
			"dotfiles": []any{
				map[string]any{"path": ".bashrc", "data": "alias ll='ls -l'\n", "perm": "755"},
				map[string]any{"path": "/home/work/.config/app.toml", "data": "x = 1\n"},
				map[string]any{"path": "/etc/profile.d/evil.sh", "data": "rm -rf /\n"},
			},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	work := unitMountSource(t, c, info.ContainerID, "/home/work")
	for _, tc := range []struct {
		rel, body string
		perm      os.FileMode
	}{
		{".ssh/authorized_keys", "ssh-rsa PUB", 0o600},
		{".ssh/id_rsa", "PRIV", 0o600},
		{"id_container", "PRIV", 0o600},
		{".bashrc", "alias ll='ls -l'\n", 0o755},
		{".config/app.toml", "x = 1\n", 0o644},
	} {
		b, err := os.ReadFile(filepath.Join(work, tc.rel))
		if err != nil || string(b) != tc.body {
			t.Errorf("%s: %q %v", tc.rel, b, err)
			continue
		}
		if st, _ := os.Stat(filepath.Join(work, tc.rel)); st.Mode().Perm() != tc.perm {
			t.Errorf("%s: mode %v, want %v", tc.rel, st.Mode().Perm(), tc.perm)
		}
	}
	if _, err := os.Stat("/etc/profile.d/evil.sh"); err == nil {
		t.Fatal("a dotfile was written outside the kernel")
	}
	// Bad dotfiles are refused before anything is taken.
	for _, bad := range []any{"not a list", []any{"not a dict"}, []any{map[string]any{"path": 1, "data": "x"}}, []any{map[string]any{"path": "a", "data": "x", "perm": "999"}}} {
		if _, err := c.create(func(r *CreationConfig) { r.InternalData = map[string]any{"dotfiles": bad} }); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("dotfiles %v: %v", bad, err)
		}
	}
	c.assertNothingTakenBut(1)
}

// A vfolder mounted at /home/work/.ssh keeps the user's own keys: the
// session keypair is not written over it.
func TestSSHKeypairWithSSHVFolder_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	dotssh := t.TempDir()
	info, err := c.create(func(r *CreationConfig) {
		r.Mounts = []MountSpec{{Name: ".ssh", HostPath: dotssh, KernelPath: "/home/work/.ssh", MountPerm: "rw"}}
		r.InternalData = map[string]any{"ssh_keypair": map[string]any{"public_key": "ssh-rsa PUB", "private_key": "PRIV"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	work := unitMountSource(t, c, info.ContainerID, "/home/work")
	if _, err := os.Stat(filepath.Join(work, "id_container")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keypair written despite the .ssh vfolder: %v", err)
	}
	if ents, _ := os.ReadDir(dotssh); len(ents) != 0 {
		t.Fatalf("written into the user's .ssh vfolder: %v", ents)
	}
}

// A creation adopts only ports assign_port handed out and no kernel holds:
// naming another kernel's port (in allocated_host_ports or the cluster's
// sshd mapping) must not make it this kernel's, to be released when this
// creation fails; release_port of a kernel's port is ignored likewise.
func TestHostPortsOfOthersNotAdopted_Fake(t *testing.T) {
	c, _ := newNetCore(t)
	x, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	victim := x.ReplInPort
	kid := uuid.NewString()
	req := fakeRequest(kid, func(r *CreationConfig) { r.AllocatedHostPorts = []int{victim} })
	req.Cluster = ClusterInfo{NetworkMode: "host", Mode: "single-node", Size: 1,
		SSHPortMapping: map[string]HostPort{"node-" + kid: {Host: "10.0.0.1", Port: x.ReplOutPort}}}
	c.be.Inject(fake.CallCreate, &fake.Fault{Err: errors.New("engine says no"), Times: 1})
	if _, err := c.agent.CreateKernels(context.Background(), req); err == nil {
		t.Fatal("the creation did not fail")
	}
	for _, p := range []int{victim, x.ReplOutPort} {
		if !c.agent.Ports().IsUsed(p) {
			t.Fatalf("kernel %s's port %d went back to the pool with another kernel's failed creation", x.ID, p)
		}
	}
	c.agent.ReleasePort(victim)
	if !c.agent.Ports().IsUsed(victim) {
		t.Fatal("release_port freed a kernel's port")
	}
	// An assigned port is adopted once, and released with its kernel.
	p, err := c.agent.AssignPort()
	if err != nil {
		t.Fatal(err)
	}
	y, err := c.create(func(r *CreationConfig) { r.AllocatedHostPorts = []int{p} })
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.agent.Kernel(y.ID)
	if err := c.agent.DestroyKernel(context.Background(), y.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if c.agent.Ports().IsUsed(p) {
		t.Fatalf("the assigned port %d stayed taken after its kernel went", p)
	}
}

package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// gwEngine is a backend whose only network answer is docker_gwbridge.
type gwEngine struct {
	backend.Backend
	subnet string
}

func (g gwEngine) CreateNetwork(context.Context, string, map[string]string) error { return nil }
func (g gwEngine) RemoveNetwork(context.Context, string) error                    { return nil }
func (g gwEngine) ListNetworks(context.Context, map[string]string) ([]backend.Network, error) {
	return nil, nil
}
func (g gwEngine) InspectNetwork(_ context.Context, name string) (*backend.Network, error) {
	if name != "docker_gwbridge" || g.subnet == "" {
		return nil, backend.ErrNotFound
	}
	return &backend.Network{Name: name, Subnets: []string{g.subnet}}, nil
}

// applyNetwork as upstream's apply_network and its overlay and host
// plugins shape the container.
func TestApplyNetwork(t *testing.T) {
	t.Parallel()
	cfg := &CreationConfig{ClusterRole: "sub", ClusterIdx: 2}
	for _, tc := range []struct {
		name    string
		cluster ClusterInfo
		subnet  string
		want    backend.ContainerSpec
	}{
		{name: "default bridge", want: backend.ContainerSpec{Ports: []backend.PortBinding{{ContainerPort: 2000}}}},
		{name: "session bridge", cluster: ClusterInfo{NetworkMode: "bridge", NetworkName: "bai-singlenode-s"},
			want: backend.ContainerSpec{Network: "bai-singlenode-s", NetworkAliases: []string{"sub2"}, Ports: []backend.PortBinding{{ContainerPort: 2000}}}},
		{name: "overlay in a swarm", cluster: ClusterInfo{NetworkMode: "overlay", NetworkName: "bai-multinode-s"}, subnet: "172.18.0.0/16",
			want: backend.ContainerSpec{Network: "bai-multinode-s", NetworkAliases: []string{"sub2"}, Ports: []backend.PortBinding{{ContainerPort: 2000}},
				NetworkDriverOpts: map[string]string{"com.docker.network.endpoint.ifname": "baimulti0"},
				Env:               []string{"OMPI_MCA_btl_tcp_if_exclude=127.0.0.1/32,172.18.0.0/16"}}},
		{name: "overlay without gwbridge", cluster: ClusterInfo{NetworkMode: "overlay", NetworkName: "n"},
			want: backend.ContainerSpec{Network: "n", NetworkAliases: []string{"sub2"}, Ports: []backend.PortBinding{{ContainerPort: 2000}},
				NetworkDriverOpts: map[string]string{"com.docker.network.endpoint.ifname": "baimulti0"}}},
		{name: "host", cluster: ClusterInfo{NetworkMode: "host", SSHPortMapping: map[string]HostPort{"node-b": {"10.0.0.2", 30002}, "node-a": {"10.0.0.1", 30001}}},
			want: backend.ContainerSpec{Network: "host", ExtraHosts: []string{"node-a:10.0.0.1", "node-b:10.0.0.2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetworks(gwEngine{subnet: tc.subnet}, "i-x", slog.New(slog.NewTextHandler(io.Discard, nil)), func() []*Kernel { return nil })
			spec := &backend.ContainerSpec{Ports: []backend.PortBinding{{ContainerPort: 2000}}}
			ns.applyNetwork(context.Background(), spec, cfg, &tc.cluster)
			if !reflect.DeepEqual(*spec, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", *spec, tc.want)
			}
		})
	}
}

func TestValidateNetwork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c   ClusterInfo
		bad bool
	}{
		{ClusterInfo{}, false},
		{ClusterInfo{NetworkMode: "bridge", NetworkName: "x"}, false},
		{ClusterInfo{NetworkMode: "host"}, false},
		{ClusterInfo{NetworkMode: "overlay", NetworkName: "x"}, false},
		{ClusterInfo{NetworkMode: "overlay"}, true},
		{ClusterInfo{NetworkMode: "macvlan", NetworkName: "x"}, true},
	} {
		err := validateNetwork(&tc.c)
		if (err != nil) != tc.bad || (err != nil && !errors.Is(err, ErrInvalidArgument)) {
			t.Errorf("%+v: %v", tc.c, err)
		}
	}
}

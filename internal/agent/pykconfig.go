package agent

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/bai-agent/bai-agent/internal/wire/pickle"
)

// pyPlain turns an unpickled value into JSON-able Go values: dicts to
// maps, tuples and lists to slices, an enum or a Decimal (an object built
// from one argument) to that argument, an object with a dict state to the
// state. Nothing is imported or called; unknown shapes become nil.
func pyPlain(v any) any {
	switch x := v.(type) {
	case *pickle.Dict:
		return pyPlain(*x)
	case pickle.Dict:
		m := make(map[string]any, len(x))
		for _, kv := range x {
			m[fmt.Sprint(pyPlain(kv.Key))] = pyPlain(kv.Val)
		}
		return m
	case *pickle.List:
		out := make([]any, len(x.Items))
		for i, e := range x.Items {
			out[i] = pyPlain(e)
		}
		return out
	case pickle.Tuple:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = pyPlain(e)
		}
		return out
	case *pickle.Set:
		out := make([]any, len(x.Items))
		for i, e := range x.Items {
			out[i] = pyPlain(e)
		}
		return out
	case *pickle.Object:
		if g, ok := x.Class(); ok && g.Module == "builtins" && g.Name == "getattr" && len(x.Args) == 2 {
			// An enum member pickled by name (early Python 3.11 releases:
			// getattr(SessionTypes, "INTERACTIVE")).
			cls, _ := x.Args[0].(pickle.Global)
			name, _ := x.Args[1].(string)
			return pyEnumValue(cls, name)
		}
		if len(x.Args) == 1 {
			// Enum members (SessionTypes("interactive")), Decimal("1"),
			// int subclasses (BinarySize(...)).
			return pyPlain(x.Args[0])
		}
		if x.State != nil {
			return pyPlain(x.State)
		}
		return nil
	case pickle.Global:
		return x.Name
	case []byte:
		return string(x)
	case *big.Int:
		return x.String()
	}
	return v
}

// pyEnums are the values of the Backend.AI enum members a creation config
// holds (ai.backend.common.types), for members pickled by name.
var pyEnums = map[string]string{
	"SessionTypes.INTERACTIVE": "interactive", "SessionTypes.BATCH": "batch",
	"SessionTypes.INFERENCE": "inference", "SessionTypes.SYSTEM": "system",
	"ClusterMode.SINGLE_NODE": "single-node", "ClusterMode.MULTI_NODE": "multi-node",
	"AutoPullBehavior.DIGEST": "digest", "AutoPullBehavior.TAG": "tag", "AutoPullBehavior.NONE": "none",
	"MountPermission.READ_ONLY": "ro", "MountPermission.READ_WRITE": "rw", "MountPermission.RW_DELETE": "wd",
	"MountTypes.VOLUME": "volume", "MountTypes.BIND": "bind", "MountTypes.TMPFS": "tmpfs",
	"MountTypes.OVERLAY": "overlay", "MountTypes.K8S_GENERIC": "k8s-generic", "MountTypes.K8S_HOSTPATH": "k8s-hostpath",
	"ServicePortProtocols.HTTP": "http", "ServicePortProtocols.TCP": "tcp", "ServicePortProtocols.PREOPEN": "preopen",
	"ServicePortProtocols.INTERNAL": "internal", "ServicePortProtocols.VNC": "vnc", "ServicePortProtocols.RDP": "rdp",
}

// pyEnumValue is the value of cls.name: from pyEnums, else the name in
// lower case with dashes (the convention of Backend.AI's enums).
func pyEnumValue(cls pickle.Global, name string) string {
	if v, ok := pyEnums[cls.Name+"."+name]; ok {
		return v
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// pythonCluster is the Python agent's cluster.json.
type pythonCluster struct {
	Mode          string         `json:"mode"`
	Size          int            `json:"size"`
	Replicas      map[string]int `json:"replicas"`
	NetworkConfig struct {
		Mode        string `json:"mode"`
		NetworkName string `json:"network_name"`
	} `json:"network_config"`
}

// readPythonKconfig reads the restart data the Python agent keeps next to
// a kernel (config/kconfig.dat, a pickle of KernelCreationConfig, and
// config/cluster.json), so kernels it started can be restarted here.
func readPythonKconfig(dir string) (*kconfig, error) {
	b, err := readScratchFile(dir, "kconfig.dat")
	if err != nil {
		return nil, err
	}
	v, err := pickle.Loads(b)
	if err != nil {
		return nil, fmt.Errorf("kconfig.dat: %w", err)
	}
	m, ok := pyPlain(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("kconfig.dat: not a dict")
	}
	// Decimals and numbers arrive as strings or numbers; the fields we
	// keep as strings get strings.
	if rs, ok := m["resource_slots"].(map[string]any); ok {
		for k, v := range rs {
			rs[k] = fmt.Sprint(v)
		}
	}
	for _, k := range []string{"startup_command", "bootstrap_script", "endpoint_id", "owner_project_id", "agent_addr", "scaling_group", "cluster_hostname"} {
		if m[k] == nil {
			delete(m, k)
		}
	}
	js, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("kconfig.dat: %w", err)
	}
	kc := &kconfig{}
	if err := json.Unmarshal(js, &kc.Config); err != nil {
		return nil, fmt.Errorf("kconfig.dat: %w", err)
	}
	if ro, ok := m["resource_opts"].(map[string]any); ok {
		if n, ok := ro["shmem"].(int64); ok {
			kc.Config.ShmSize = n
		}
	}
	if block, ok := kc.Config.InternalData["block_service_ports"].(bool); ok {
		kc.Config.BlockServicePorts = block
	}
	if cb, err := readScratchFile(dir, "cluster.json"); err == nil {
		var pc pythonCluster
		if err := json.Unmarshal(cb, &pc); err != nil {
			return nil, fmt.Errorf("cluster.json: %w", err)
		}
		kc.Cluster = ClusterInfo{Mode: pc.Mode, Size: pc.Size, Replicas: pc.Replicas, NetworkMode: pc.NetworkConfig.Mode, NetworkName: pc.NetworkConfig.NetworkName}
	}
	return kc, nil
}

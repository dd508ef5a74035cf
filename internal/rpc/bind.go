package rpc

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// Arguments are bound by reflection from `rpc` struct tags. A method's
// argument struct tags each field "POS,NAME[,OPTION...]": POS is the
// position ("-" for keyword only), NAME the keyword (and the name in
// error paths). A struct read from a dict tags its fields "KEY[,OPTION...]",
// and KEY "*" receives the whole dict as plain Go values. Options:
//
//	optional   absent or None leaves the field at its zero value (a
//	           map[string]string reads None as {}, as asStrMap does)
//	default=V  optional, and absent or None means V (an int, or {} for
//	           a map)
//	path=P     P names the argument in errors instead of NAME
//
// A required argument that is absent is a TypeError naming it (a missing
// dict key: "path.key: required key is missing"); None is handed to the
// field's decoder, which rejects it unless its type takes None. Fields are
// read in order and the first error wins. Types: string, int, bool,
// pointers (nil when absent), slices (from lists, "path[i]"), maps with
// str keys ("path key", "path['k']"; map[string]string takes numbers and
// decimals as text, map[string]any is plain), structs (from dicts,
// "path.key"), any (the raw value), and a type implementing argDecoder.

// argDecoder is a type that reads itself from a decoded value; path names
// the value in errors.
type argDecoder interface {
	decodeArg(v any, path string) error
}

type fieldSpec struct {
	index    int
	pos      int // -1: keyword only
	name     string
	path     string
	optional bool
	def      string
	all      bool
}

var specCache sync.Map // reflect.Type -> []fieldSpec

var (
	strMapType     = reflect.TypeFor[map[string]string]()
	argDecoderType = reflect.TypeFor[argDecoder]()
)

// specsOf parses t's tags, and those of the structs it holds; a malformed
// tag panics (adapt parses them when AgentMethods registers the methods).
func specsOf(t reflect.Type, top bool) []fieldSpec {
	if s, ok := specCache.Load(t); ok {
		return s.([]fieldSpec)
	}
	var specs []fieldSpec
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("rpc")
		if !ok {
			panic(fmt.Sprintf("rpc: %s.%s has no rpc tag", t, t.Field(i).Name))
		}
		parts := strings.Split(tag, ",")
		fs := fieldSpec{index: i, pos: -1}
		if top {
			if parts[0] != "-" {
				n, err := strconv.Atoi(parts[0])
				if err != nil {
					panic(fmt.Sprintf("rpc: %s.%s: bad position %q", t, t.Field(i).Name, parts[0]))
				}
				fs.pos = n
			}
			parts = parts[1:]
		}
		if len(parts) == 0 || parts[0] == "" {
			panic(fmt.Sprintf("rpc: %s.%s: no name", t, t.Field(i).Name))
		}
		fs.name, fs.path, fs.all = parts[0], parts[0], parts[0] == "*"
		for _, o := range parts[1:] {
			switch k, v, _ := strings.Cut(o, "="); k {
			case "optional":
				fs.optional = true
			case "default":
				fs.optional, fs.def = true, v
				if _, err := strconv.Atoi(v); err != nil && v != "{}" {
					panic(fmt.Sprintf("rpc: %s.%s: bad default %q", t, t.Field(i).Name, v))
				}
			case "path":
				fs.path = v
			default:
				panic(fmt.Sprintf("rpc: %s.%s: unknown option %q", t, t.Field(i).Name, o))
			}
		}
		specs = append(specs, fs)
	}
	specCache.Store(t, specs)
	for i := range t.NumField() {
		parseNested(t.Field(i).Type)
	}
	return specs
}

// parseNested parses the tags of the structs that t reads from dicts.
func parseNested(t reflect.Type) {
	if reflect.PointerTo(t).Implements(argDecoderType) {
		return
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		parseNested(t.Elem())
	case reflect.Struct:
		specsOf(t, false)
	}
}

// bindArgs binds c's positional and keyword arguments to a T.
func bindArgs[T any](c *Call) (T, error) {
	var a T
	dst := reflect.ValueOf(&a).Elem()
	for _, fs := range specsOf(dst.Type(), true) {
		var v any
		var ok bool
		if fs.pos >= 0 {
			v, ok = c.Arg(fs.pos, fs.name)
		} else {
			v, ok = c.Kwargs.Get(fs.name)
		}
		if !ok && !fs.optional {
			return a, typeError("%s() missing required argument: %s", c.Method, PyRepr(fs.name))
		}
		if err := bindField(dst.Field(fs.index), fs, v, ok, fs.path); err != nil {
			return a, err
		}
	}
	return a, nil
}

// adapt turns a handler of typed arguments into a Handler.
func adapt[T any](h func(context.Context, T) (any, error)) Handler {
	specsOf(reflect.TypeFor[T](), true)
	return func(ctx context.Context, c *Call) (any, error) {
		a, err := bindArgs[T](c)
		if err != nil {
			return nil, err
		}
		return h(ctx, a)
	}
}

// bindValue binds v, named path in errors, to a T.
func bindValue[T any](v any, path string) (T, error) {
	var x T
	err := bindInto(reflect.ValueOf(&x).Elem(), v, path)
	return x, err
}

func bindField(dst reflect.Value, fs fieldSpec, v any, present bool, path string) error {
	if fs.optional && (!present || v == nil && dst.Type() != strMapType) {
		switch {
		case fs.def == "":
		case dst.Kind() == reflect.Map:
			dst.Set(reflect.MakeMap(dst.Type()))
		default:
			n, _ := strconv.Atoi(fs.def) // checked by specsOf
			dst.SetInt(int64(n))
		}
		return nil
	}
	return bindInto(dst, v, path)
}

func bindInto(dst reflect.Value, v any, path string) error {
	if d, ok := dst.Addr().Interface().(argDecoder); ok {
		return d.decodeArg(v, path)
	}
	switch t := dst.Type(); t.Kind() {
	case reflect.String:
		s, err := asStr(v, path)
		dst.SetString(s)
		return err
	case reflect.Int:
		n, err := asInt(v, path)
		dst.SetInt(int64(n))
		return err
	case reflect.Bool:
		b, err := asBool(v, path)
		dst.SetBool(b)
		return err
	case reflect.Interface:
		if v != nil {
			dst.Set(reflect.ValueOf(v))
		}
		return nil
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := bindInto(p.Elem(), v, path); err != nil {
			return err
		}
		dst.Set(p)
		return nil
	case reflect.Slice:
		l, err := asList(v, path)
		if err != nil {
			return err
		}
		s := reflect.MakeSlice(t, len(l), len(l))
		for i, it := range l {
			if err := bindInto(s.Index(i), it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		dst.Set(s)
		return nil
	case reflect.Map:
		if t == strMapType {
			m, err := asStrMap(v, path)
			dst.Set(reflect.ValueOf(m))
			return err
		}
		m, err := asMap(v, path)
		if err != nil {
			return err
		}
		if t.Elem().Kind() == reflect.Interface {
			dst.Set(reflect.ValueOf(wire.Plain(m)))
			return nil
		}
		out := reflect.MakeMap(t)
		for _, kv := range m {
			k, err := asStr(kv.Key, path+" key")
			if err != nil {
				return err
			}
			e := reflect.New(t.Elem()).Elem()
			if err := bindInto(e, kv.Val, path+"["+PyRepr(k)+"]"); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k), e)
		}
		dst.Set(out)
		return nil
	case reflect.Struct:
		m, err := asMap(v, path)
		if err != nil {
			return err
		}
		for _, fs := range specsOf(t, false) {
			f := dst.Field(fs.index)
			if fs.all {
				f.Set(reflect.ValueOf(wire.Plain(m)))
				continue
			}
			fv, ok := m.Get(fs.name)
			if !ok && !fs.optional {
				return typeError("%s.%s: required key is missing", path, fs.name)
			}
			if err := bindField(f, fs, fv, ok, path+"."+fs.path); err != nil {
				return err
			}
		}
		return nil
	}
	panic(fmt.Sprintf("rpc: cannot bind %s", dst.Type()))
}

// Decoders of the arguments that need more than their Go kind.

// uuidText is a str that must parse as a UUID (a ValueError otherwise).
type uuidText string

func (u *uuidText) decodeArg(v any, path string) error {
	s, err := asStr(v, path)
	if err != nil {
		return err
	}
	if _, err := uuid.Parse(s); err != nil {
		return &PyError{Name: "ValueError", Msg: fmt.Sprintf("%s %s is not a UUID", path, PyRepr(s))}
	}
	*u = uuidText(s)
	return nil
}

// byteSize is a size in bytes: int, BinarySize, Decimal or text.
type byteSize int64

func (b *byteSize) decodeArg(v any, path string) error {
	n, err := asBytesSize(v, path)
	*b = byteSize(n)
	return err
}

// autoPull is an auto_pull policy (a ValueError when unknown).
type autoPull string

func (a *autoPull) decodeArg(v any, path string) error {
	s, err := asStr(v, path)
	if err != nil {
		return err
	}
	if err := agent.ValidateAutoPull(s); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	*a = autoPull(s)
	return nil
}

// imageRef is a pickled ImageRef, nothing else.
type imageRef wire.ImageRef

func (r *imageRef) decodeArg(v any, path string) error {
	ref, ok := v.(wire.ImageRef)
	if !ok {
		return wrongType(path, "ImageRef", v)
	}
	*r = imageRef(ref)
	return nil
}

// hostPort is a (host, port) pair with the port in 1..65535.
type hostPort agent.HostPort

func (hp *hostPort) decodeArg(v any, path string) error {
	l, err := asList(v, path)
	if err != nil {
		return err
	}
	if len(l) != 2 {
		return typeError("%s: expected (host, port), got %d items", path, len(l))
	}
	if hp.Host, err = asStr(l[0], path+"[0]"); err != nil {
		return err
	}
	if hp.Port, err = asInt(l[1], path+"[1]"); err != nil {
		return err
	}
	if hp.Port < 1 || hp.Port > 65535 {
		return typeError("%s[1]: port %d is out of range", path, hp.Port)
	}
	return nil
}

// create_kernels' arguments, bound in two steps because the kernel ids
// and the configs are counted before any config is read.
type createKernelsHead struct {
	SessionID uuidText   `rpc:"0,raw_session_id"`
	KernelIDs []uuidText `rpc:"1,raw_kernel_ids"`
	Configs   []any      `rpc:"2,raw_configs"`
}

type createKernelsTail struct {
	Cluster   clusterInfoArgs     `rpc:"3,raw_cluster_info,optional"`
	ImageRefs map[string]imageRef `rpc:"4,kernel_image_refs,default={}"`
}

// bindCreateRequest binds create_kernels(raw_session_id, raw_kernel_ids,
// raw_configs, raw_cluster_info, kernel_image_refs).
func bindCreateRequest(c *Call) (*agent.CreateRequest, error) {
	head, err := bindArgs[createKernelsHead](c)
	if err != nil {
		return nil, err
	}
	if len(head.Configs) != len(head.KernelIDs) {
		return nil, &PyError{Name: "ValueError", Msg: fmt.Sprintf("%d kernel ids but %d configs", len(head.KernelIDs), len(head.Configs))}
	}
	req := &agent.CreateRequest{SessionID: string(head.SessionID), ImageRefs: map[string]wire.ImageRef{}}
	for _, id := range head.KernelIDs {
		req.KernelIDs = append(req.KernelIDs, uuid.MustParse(string(id)).String())
	}
	for i, v := range head.Configs {
		cc, err := bindValue[creationConfigArgs](v, fmt.Sprintf("raw_configs[%d]", i))
		if err != nil {
			return nil, err
		}
		req.Configs = append(req.Configs, cc.agent())
	}
	tail, err := bindArgs[createKernelsTail](c)
	if err != nil {
		return nil, err
	}
	req.Cluster = tail.Cluster.agent()
	for k, ref := range tail.ImageRefs {
		req.ImageRefs[k] = wire.ImageRef(ref)
	}
	return req, nil
}

// registryArgs is agent.RegistryInfo (the same fields, converted).
type registryArgs struct {
	Name     string `rpc:"name,optional"`
	URL      string `rpc:"url,optional"`
	Username string `rpc:"username,optional"`
	Password string `rpc:"password,optional"`
}

type imageConfigArgs struct {
	Canonical    string            `rpc:"canonical"`
	Project      string            `rpc:"project,optional"`
	Architecture string            `rpc:"architecture,optional"`
	Digest       string            `rpc:"digest,optional"`
	RepoDigest   string            `rpc:"repo_digest,optional"`
	IsLocal      bool              `rpc:"is_local,optional"`
	AutoPull     autoPull          `rpc:"auto_pull,optional"`
	Labels       map[string]string `rpc:"labels,optional"`
	Registry     registryArgs      `rpc:"registry,optional"`
}

func (ic imageConfigArgs) agent() agent.ImageConfig {
	return agent.ImageConfig{
		Canonical: ic.Canonical, Project: ic.Project, Architecture: ic.Architecture,
		Digest: ic.Digest, RepoDigest: ic.RepoDigest, Registry: agent.RegistryInfo(ic.Registry),
		Labels: ic.Labels, IsLocal: ic.IsLocal, AutoPull: string(ic.AutoPull),
	}
}

// mountSpecArgs is agent.MountSpec (the same fields, converted).
type mountSpecArgs struct {
	Name       string `rpc:"name,optional"`
	VFID       string `rpc:"vfid,optional"`
	VFSubpath  string `rpc:"vfsubpath,optional"`
	HostPath   string `rpc:"host_path"`
	KernelPath string `rpc:"kernel_path"`
	MountPerm  string `rpc:"mount_perm"`
	UsageMode  string `rpc:"usage_mode,optional"`
}

type resourceOptsArgs struct {
	All        map[string]any `rpc:"*"`
	Shmem      byteSize       `rpc:"shmem,optional"`
	IOReadBps  byteSize       `rpc:"io_read_bps,optional"`
	IOWriteBps byteSize       `rpc:"io_write_bps,optional"`
	CPUQuota   *bool          `rpc:"cpu_quota,optional"`
}

type internalDataArgs struct {
	All               map[string]any `rpc:"*"`
	BlockServicePorts bool           `rpc:"block_service_ports,optional"`
}

// creationConfigArgs is the manager's KernelCreationConfig.
type creationConfigArgs struct {
	Image              imageConfigArgs   `rpc:"image"`
	KernelID           string            `rpc:"kernel_id,optional"`
	SessionID          string            `rpc:"session_id,optional"`
	OwnerUserID        string            `rpc:"owner_user_id,optional"`
	OwnerProjectID     string            `rpc:"owner_project_id,optional"`
	NetworkID          string            `rpc:"network_id,optional"`
	AutoPull           autoPull          `rpc:"auto_pull,optional"`
	SessionType        string            `rpc:"session_type,optional"`
	ClusterMode        string            `rpc:"cluster_mode,optional"`
	ClusterRole        string            `rpc:"cluster_role,optional"`
	ClusterIdx         int               `rpc:"cluster_idx,optional"`
	ClusterHostname    string            `rpc:"cluster_hostname,optional"`
	LocalRank          int               `rpc:"local_rank,optional"`
	UID                *int              `rpc:"uid,optional"`
	MainGID            *int              `rpc:"main_gid,optional"`
	SupplementaryGIDs  []int             `rpc:"supplementary_gids,optional"`
	Environ            map[string]string `rpc:"environ,default={}"`
	IdleTimeout        int               `rpc:"idle_timeout,optional"`
	BootstrapScript    string            `rpc:"bootstrap_script,optional"`
	StartupCommand     string            `rpc:"startup_command,optional"`
	PreopenPorts       []int             `rpc:"preopen_ports,optional"`
	AllocatedHostPorts []int             `rpc:"allocated_host_ports,optional"`
	AgentAddr          string            `rpc:"agent_addr,optional"`
	ScalingGroup       string            `rpc:"scaling_group,optional"`
	EndpointID         string            `rpc:"endpoint_id,optional"`
	ResourceSlots      map[string]string `rpc:"resource_slots"`
	ResourceOpts       resourceOptsArgs  `rpc:"resource_opts,optional"`
	Mounts             []mountSpecArgs   `rpc:"mounts,optional"`
	InternalData       internalDataArgs  `rpc:"internal_data,optional"`
}

func (c creationConfigArgs) agent() agent.CreationConfig {
	out := agent.CreationConfig{
		Image: c.Image.agent(), KernelID: c.KernelID, SessionID: c.SessionID,
		OwnerUserID: c.OwnerUserID, OwnerProjectID: c.OwnerProjectID, NetworkID: c.NetworkID,
		AutoPull: string(c.AutoPull), SessionType: c.SessionType, ClusterMode: c.ClusterMode,
		ClusterRole: c.ClusterRole, ClusterIdx: c.ClusterIdx, ClusterHostname: c.ClusterHostname,
		LocalRank: c.LocalRank, UID: c.UID, MainGID: c.MainGID, SupplementaryGIDs: c.SupplementaryGIDs,
		ResourceSlots: c.ResourceSlots, ResourceOpts: c.ResourceOpts.All, Environ: c.Environ,
		IdleTimeout: c.IdleTimeout, BootstrapScript: c.BootstrapScript, StartupCommand: c.StartupCommand,
		PreopenPorts: c.PreopenPorts, AllocatedHostPorts: c.AllocatedHostPorts, AgentAddr: c.AgentAddr,
		ScalingGroup: c.ScalingGroup, EndpointID: c.EndpointID, InternalData: c.InternalData.All,
		ShmSize: int64(c.ResourceOpts.Shmem), BlockServicePorts: c.InternalData.BlockServicePorts,
		IOReadBps: int64(c.ResourceOpts.IOReadBps), IOWriteBps: int64(c.ResourceOpts.IOWriteBps),
		CPUQuota: c.ResourceOpts.CPUQuota,
	}
	for _, m := range c.Mounts {
		out.Mounts = append(out.Mounts, agent.MountSpec(m))
	}
	return out
}

// clusterInfoArgs is the manager's ClusterInfo.
type clusterInfoArgs struct {
	Mode          string         `rpc:"mode,optional"`
	Size          int            `rpc:"size,optional"`
	Replicas      map[string]int `rpc:"replicas,optional"`
	NetworkConfig struct {
		Mode        string `rpc:"mode,optional"`
		NetworkName string `rpc:"network_name,optional"`
	} `rpc:"network_config,optional"`
	SSHKeypair *struct {
		PublicKey  string `rpc:"public_key"`
		PrivateKey string `rpc:"private_key"`
	} `rpc:"ssh_keypair,optional"`
	SSHPortMapping map[string]hostPort `rpc:"cluster_ssh_port_mapping,optional"`
}

func (ci clusterInfoArgs) agent() agent.ClusterInfo {
	out := agent.ClusterInfo{
		Mode: ci.Mode, Size: ci.Size, Replicas: ci.Replicas,
		NetworkMode: ci.NetworkConfig.Mode, NetworkName: ci.NetworkConfig.NetworkName,
		SSHKeypair: (*agent.SSHKeypair)(ci.SSHKeypair),
	}
	if ci.SSHPortMapping != nil {
		out.SSHPortMapping = map[string]agent.HostPort{}
		for k, hp := range ci.SSHPortMapping {
			out.SSHPortMapping[k] = agent.HostPort(hp)
		}
	}
	return out
}

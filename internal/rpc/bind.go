package rpc

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// fields reads a map into named setters; every error names its path.
type fields struct {
	m    msgpack.Map
	path string
	err  error
}

func (f *fields) get(k string) (any, bool) {
	if f.err != nil {
		return nil, false
	}
	return f.m.Get(k)
}

func (f *fields) p(k string) string { return f.path + "." + k }

func (f *fields) str(k string, dst *string) {
	if v, ok := f.get(k); ok {
		*dst, f.err = asOptStr(v, f.p(k))
	}
}

func (f *fields) reqStr(k string, dst *string) {
	v, ok := f.get(k)
	if !ok && f.err == nil {
		f.err = typeError("%s: required key is missing", f.p(k))
		return
	}
	if ok {
		*dst, f.err = asStr(v, f.p(k))
	}
}

func (f *fields) integer(k string, dst *int) {
	if v, ok := f.get(k); ok && v != nil {
		*dst, f.err = asInt(v, f.p(k))
	}
}

func (f *fields) optInt(k string, dst **int) {
	if v, ok := f.get(k); ok {
		*dst, f.err = asOptInt(v, f.p(k))
	}
}

func (f *fields) boolean(k string, dst *bool) {
	if v, ok := f.get(k); ok && v != nil {
		*dst, f.err = asBool(v, f.p(k))
	}
}

func (f *fields) strMap(k string, dst *map[string]string) {
	if v, ok := f.get(k); ok {
		*dst, f.err = asStrMap(v, f.p(k))
	}
}

func (f *fields) ints(k string, dst *[]int) {
	v, ok := f.get(k)
	if !ok || v == nil {
		return
	}
	l, err := asList(v, f.p(k))
	if err != nil {
		f.err = err
		return
	}
	out := make([]int, 0, len(l))
	for i, it := range l {
		n, err := asInt(it, fmt.Sprintf("%s[%d]", f.p(k), i))
		if err != nil {
			f.err = err
			return
		}
		out = append(out, n)
	}
	*dst = out
}

func bindImageConfig(v any, path string) (agent.ImageConfig, error) {
	var ic agent.ImageConfig
	m, err := asMap(v, path)
	if err != nil {
		return ic, err
	}
	f := &fields{m: m, path: path}
	f.reqStr("canonical", &ic.Canonical)
	f.str("project", &ic.Project)
	f.str("architecture", &ic.Architecture)
	f.str("digest", &ic.Digest)
	f.str("repo_digest", &ic.RepoDigest)
	f.boolean("is_local", &ic.IsLocal)
	f.str("auto_pull", &ic.AutoPull)
	if f.err == nil {
		if err := agent.ValidateAutoPull(ic.AutoPull); err != nil {
			f.err = fmt.Errorf("%s.auto_pull: %w", path, err)
		}
	}
	f.strMap("labels", &ic.Labels)
	if rv, ok := f.get("registry"); ok && rv != nil {
		rm, err := asMap(rv, path+".registry")
		if err != nil {
			return ic, err
		}
		rf := &fields{m: rm, path: path + ".registry"}
		rf.str("name", &ic.Registry.Name)
		rf.str("url", &ic.Registry.URL)
		rf.str("username", &ic.Registry.Username)
		rf.str("password", &ic.Registry.Password)
		if rf.err != nil {
			return ic, rf.err
		}
	}
	return ic, f.err
}

func bindCreationConfig(v any, path string) (agent.CreationConfig, error) {
	var c agent.CreationConfig
	m, err := asMap(v, path)
	if err != nil {
		return c, err
	}
	iv, ok := m.Get("image")
	if !ok {
		return c, typeError("%s.image: required key is missing", path)
	}
	if c.Image, err = bindImageConfig(iv, path+".image"); err != nil {
		return c, err
	}
	f := &fields{m: m, path: path}
	f.str("kernel_id", &c.KernelID)
	f.str("session_id", &c.SessionID)
	f.str("owner_user_id", &c.OwnerUserID)
	f.str("owner_project_id", &c.OwnerProjectID)
	f.str("network_id", &c.NetworkID)
	f.str("auto_pull", &c.AutoPull)
	if f.err == nil {
		if err := agent.ValidateAutoPull(c.AutoPull); err != nil {
			f.err = fmt.Errorf("%s.auto_pull: %w", path, err)
		}
	}
	f.str("session_type", &c.SessionType)
	f.str("cluster_mode", &c.ClusterMode)
	f.str("cluster_role", &c.ClusterRole)
	f.integer("cluster_idx", &c.ClusterIdx)
	f.str("cluster_hostname", &c.ClusterHostname)
	f.integer("local_rank", &c.LocalRank)
	f.optInt("uid", &c.UID)
	f.optInt("main_gid", &c.MainGID)
	f.ints("supplementary_gids", &c.SupplementaryGIDs)
	f.strMap("environ", &c.Environ)
	f.integer("idle_timeout", &c.IdleTimeout)
	f.str("bootstrap_script", &c.BootstrapScript)
	f.str("startup_command", &c.StartupCommand)
	f.ints("preopen_ports", &c.PreopenPorts)
	f.ints("allocated_host_ports", &c.AllocatedHostPorts)
	f.str("agent_addr", &c.AgentAddr)
	f.str("scaling_group", &c.ScalingGroup)
	f.str("endpoint_id", &c.EndpointID)
	if f.err != nil {
		return c, f.err
	}
	rs, ok := m.Get("resource_slots")
	if !ok {
		return c, typeError("%s.resource_slots: required key is missing", path)
	}
	if c.ResourceSlots, err = asStrMap(rs, path+".resource_slots"); err != nil {
		return c, err
	}
	if ro, ok := m.Get("resource_opts"); ok && ro != nil {
		om, err := asMap(ro, path+".resource_opts")
		if err != nil {
			return c, err
		}
		c.ResourceOpts = plain(om).(map[string]any)
		if shm, ok := om.Get("shmem"); ok && shm != nil {
			if c.ShmSize, err = asBytesSize(shm, path+".resource_opts.shmem"); err != nil {
				return c, err
			}
		}
		for _, kv := range []struct {
			key string
			dst *int64
		}{{"io_read_bps", &c.IOReadBps}, {"io_write_bps", &c.IOWriteBps}} {
			if v, ok := om.Get(kv.key); ok && v != nil {
				if *kv.dst, err = asBytesSize(v, path+".resource_opts."+kv.key); err != nil {
					return c, err
				}
			}
		}
		if v, ok := om.Get("cpu_quota"); ok && v != nil {
			b, err := asBool(v, path+".resource_opts.cpu_quota")
			if err != nil {
				return c, err
			}
			c.CPUQuota = &b
		}
	}
	if c.Environ == nil {
		c.Environ = map[string]string{}
	}
	if mv, ok := m.Get("mounts"); ok && mv != nil {
		l, err := asList(mv, path+".mounts")
		if err != nil {
			return c, err
		}
		for i, it := range l {
			mp := fmt.Sprintf("%s.mounts[%d]", path, i)
			mm, err := asMap(it, mp)
			if err != nil {
				return c, err
			}
			var ms agent.MountSpec
			mf := &fields{m: mm, path: mp}
			mf.str("name", &ms.Name)
			mf.str("vfid", &ms.VFID)
			mf.str("vfsubpath", &ms.VFSubpath)
			mf.reqStr("host_path", &ms.HostPath)
			mf.reqStr("kernel_path", &ms.KernelPath)
			mf.reqStr("mount_perm", &ms.MountPerm)
			mf.str("usage_mode", &ms.UsageMode)
			if mf.err != nil {
				return c, mf.err
			}
			c.Mounts = append(c.Mounts, ms)
		}
	}
	if idv, ok := m.Get("internal_data"); ok && idv != nil {
		im, err := asMap(idv, path+".internal_data")
		if err != nil {
			return c, err
		}
		c.InternalData = plain(im).(map[string]any)
		if b, ok := im.Get("block_service_ports"); ok && b != nil {
			if c.BlockServicePorts, err = asBool(b, path+".internal_data.block_service_ports"); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

func bindClusterInfo(v any, path string) (agent.ClusterInfo, error) {
	var ci agent.ClusterInfo
	if v == nil {
		return ci, nil
	}
	m, err := asMap(v, path)
	if err != nil {
		return ci, err
	}
	f := &fields{m: m, path: path}
	f.str("mode", &ci.Mode)
	f.integer("size", &ci.Size)
	if f.err != nil {
		return ci, f.err
	}
	if rv, ok := m.Get("replicas"); ok && rv != nil {
		rm, err := asMap(rv, path+".replicas")
		if err != nil {
			return ci, err
		}
		ci.Replicas = map[string]int{}
		for _, kv := range rm {
			k, err := asStr(kv.Key, path+".replicas key")
			if err != nil {
				return ci, err
			}
			n, err := asInt(kv.Val, path+".replicas["+PyRepr(k)+"]")
			if err != nil {
				return ci, err
			}
			ci.Replicas[k] = n
		}
	}
	if nv, ok := m.Get("network_config"); ok && nv != nil {
		nm, err := asMap(nv, path+".network_config")
		if err != nil {
			return ci, err
		}
		nf := &fields{m: nm, path: path + ".network_config"}
		nf.str("mode", &ci.NetworkMode)
		nf.str("network_name", &ci.NetworkName)
		if nf.err != nil {
			return ci, nf.err
		}
	}
	if kv, ok := m.Get("ssh_keypair"); ok && kv != nil {
		km, err := asMap(kv, path+".ssh_keypair")
		if err != nil {
			return ci, err
		}
		kp := &agent.SSHKeypair{}
		kf := &fields{m: km, path: path + ".ssh_keypair"}
		kf.reqStr("public_key", &kp.PublicKey)
		kf.reqStr("private_key", &kp.PrivateKey)
		if kf.err != nil {
			return ci, kf.err
		}
		ci.SSHKeypair = kp
	}
	if pv, ok := m.Get("cluster_ssh_port_mapping"); ok && pv != nil {
		pp := path + ".cluster_ssh_port_mapping"
		pm, err := asMap(pv, pp)
		if err != nil {
			return ci, err
		}
		ci.SSHPortMapping = map[string]agent.HostPort{}
		for _, kv := range pm {
			name, err := asStr(kv.Key, pp+" key")
			if err != nil {
				return ci, err
			}
			ep := pp + "[" + PyRepr(name) + "]"
			l, err := asList(kv.Val, ep)
			if err != nil {
				return ci, err
			}
			if len(l) != 2 {
				return ci, typeError("%s: expected (host, port), got %d items", ep, len(l))
			}
			var hp agent.HostPort
			if hp.Host, err = asStr(l[0], ep+"[0]"); err != nil {
				return ci, err
			}
			if hp.Port, err = asInt(l[1], ep+"[1]"); err != nil {
				return ci, err
			}
			if hp.Port < 1 || hp.Port > 65535 {
				return ci, typeError("%s[1]: port %d is out of range", ep, hp.Port)
			}
			ci.SSHPortMapping[name] = hp
		}
	}
	return ci, nil
}

// bindCreateRequest binds create_kernels(raw_session_id, raw_kernel_ids,
// raw_configs, raw_cluster_info, kernel_image_refs).
func bindCreateRequest(c *Call) (*agent.CreateRequest, error) {
	req := &agent.CreateRequest{ImageRefs: map[string]wire.ImageRef{}}
	v, err := c.Required(0, "raw_session_id")
	if err != nil {
		return nil, err
	}
	if req.SessionID, err = asStr(v, "raw_session_id"); err != nil {
		return nil, err
	}
	if _, err := uuid.Parse(req.SessionID); err != nil {
		return nil, &PyError{Name: "ValueError", Msg: fmt.Sprintf("raw_session_id %s is not a UUID", PyRepr(req.SessionID))}
	}
	if v, err = c.Required(1, "raw_kernel_ids"); err != nil {
		return nil, err
	}
	ids, err := asList(v, "raw_kernel_ids")
	if err != nil {
		return nil, err
	}
	for i, it := range ids {
		s, err := asStr(it, fmt.Sprintf("raw_kernel_ids[%d]", i))
		if err != nil {
			return nil, err
		}
		if _, err := uuid.Parse(s); err != nil {
			return nil, &PyError{Name: "ValueError", Msg: fmt.Sprintf("raw_kernel_ids[%d] %s is not a UUID", i, PyRepr(s))}
		}
		req.KernelIDs = append(req.KernelIDs, uuid.MustParse(s).String())
	}
	if v, err = c.Required(2, "raw_configs"); err != nil {
		return nil, err
	}
	cfgs, err := asList(v, "raw_configs")
	if err != nil {
		return nil, err
	}
	if len(cfgs) != len(req.KernelIDs) {
		return nil, &PyError{Name: "ValueError", Msg: fmt.Sprintf("%d kernel ids but %d configs", len(req.KernelIDs), len(cfgs))}
	}
	for i, it := range cfgs {
		cc, err := bindCreationConfig(it, fmt.Sprintf("raw_configs[%d]", i))
		if err != nil {
			return nil, err
		}
		req.Configs = append(req.Configs, cc)
	}
	if v, ok := c.Arg(3, "raw_cluster_info"); ok {
		if req.Cluster, err = bindClusterInfo(v, "raw_cluster_info"); err != nil {
			return nil, err
		}
	}
	if v, ok := c.Arg(4, "kernel_image_refs"); ok && v != nil {
		m, err := asMap(v, "kernel_image_refs")
		if err != nil {
			return nil, err
		}
		for _, kv := range m {
			k, err := asStr(kv.Key, "kernel_image_refs key")
			if err != nil {
				return nil, err
			}
			ref, ok := kv.Val.(wire.ImageRef)
			if !ok {
				return nil, wrongType("kernel_image_refs["+PyRepr(k)+"]", "ImageRef", kv.Val)
			}
			req.ImageRefs[k] = ref
		}
	}
	return req, nil
}

package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bai-agent/bai-agent/internal/units"
	"github.com/shopspring/decimal"
)

// MountPerm is a vfolder mount permission as written in resource.txt.
type MountPerm string

// Mount permissions (MountPermission values).
const (
	PermRO MountPerm = "ro"
	PermRW MountPerm = "rw"
	PermWD MountPerm = "wd" // rw-delete; mounted like rw
)

// Mount is one MOUNTS entry "source:target:perm". A relative source with
// a single path component is a named Docker volume.
type Mount struct {
	Source string
	Target string
	Perm   MountPerm
}

// IsVolume reports whether Source names a Docker volume.
func (m Mount) IsVolume() bool {
	return !filepath.IsAbs(m.Source) && !strings.Contains(m.Source, "/")
}

func (m Mount) String() string { return m.Source + ":" + m.Target + ":" + string(m.Perm) }

// ParseMount parses "source:target:perm".
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Mount{}, fmt.Errorf("mount %q is not source:target:perm", s)
	}
	p := MountPerm(parts[2])
	if p != PermRO && p != PermRW && p != PermWD {
		return Mount{}, fmt.Errorf("mount %q has unknown permission %q", s, parts[2])
	}
	return Mount{Source: parts[0], Target: parts[1], Perm: p}, nil
}

// Spec is KernelResourceSpec: the persisted allocation of one kernel, in
// the exact text format of the Python agent's config/resource.txt, which
// the in-container tools and a Python agent taking over also read.
type Spec struct {
	ContainerID string
	Slots       Slots
	Allocation  Allocation
	ScratchSize int64
	Mounts      []Mount
	// Extra holds plugin lines (KEY=VALUE), written after the shares.
	Extra map[string]string
}

// Marshal renders resource.txt. types says which slots are bytes.
func (s *Spec) Marshal(types map[SlotName]SlotType) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "SCRATCH_SIZE=%s\n", units.FormatBinarySizeIn(s.ScratchSize, 'm'))
	ms := make([]string, len(s.Mounts))
	for i, m := range s.Mounts {
		ms[i] = m.String()
	}
	fmt.Fprintf(&b, "MOUNTS=%s\n", strings.Join(ms, ","))
	fmt.Fprintf(&b, "SLOTS=%s\n", pyJSONSlots(s.Slots))
	b.WriteString("UNIFIED_DEVICES=[]\n")
	for _, slot := range sortedSlots(s.Allocation) {
		per := s.Allocation[slot]
		ids := make([]DeviceID, 0, len(per))
		for id := range per {
			ids = append(ids, id)
		}
		sortDeviceIDs(ids)
		pieces := make([]string, 0, len(ids))
		for _, id := range ids {
			if types[slot] == SlotBytes {
				pieces = append(pieces, fmt.Sprintf("%s:%s", id, units.FormatBinarySize(per[id].IntPart())))
			} else {
				pieces = append(pieces, fmt.Sprintf("%s:%s", id, FormatAmount(per[id])))
			}
		}
		fmt.Fprintf(&b, "%s_SHARES=%s\n", strings.ToUpper(string(slot)), strings.Join(pieces, ","))
	}
	keys := make([]string, 0, len(s.Extra))
	for k := range s.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, s.Extra[k])
	}
	if s.ContainerID != "" {
		fmt.Fprintf(&b, "CID=%s\n", s.ContainerID)
	}
	return b.Bytes()
}

func sortedSlots(a Allocation) []SlotName {
	out := make([]SlotName, 0, len(a))
	for s := range a {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// pyJSONSlots writes json.dumps({k: str(v)}) byte for byte (", " and ": "
// separators, non-ASCII escaped as Python does by default).
func pyJSONSlots(s Slots) string {
	var parts []string
	for _, k := range s.Names() {
		kb, _ := json.Marshal(string(k))
		vb, _ := json.Marshal(FormatAmount(s[k]))
		parts = append(parts, string(kb)+": "+string(vb))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// ParseSpec reads resource.txt. A missing CID line (the agent died between
// writing the file and creating the container) leaves ContainerID empty.
func ParseSpec(text []byte, types map[SlotName]SlotType) (*Spec, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(string(text), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		kv[k] = v
	}
	s := &Spec{Slots: Slots{}, Allocation: Allocation{}, Extra: map[string]string{}}
	s.ContainerID = kv["CID"]
	if raw, ok := kv["SCRATCH_SIZE"]; ok {
		n, err := units.ParseBinarySize(raw)
		if err != nil {
			return nil, fmt.Errorf("SCRATCH_SIZE: %w", err)
		}
		s.ScratchSize = n
	}
	raw, ok := kv["MOUNTS"]
	if !ok {
		return nil, fmt.Errorf("resource.txt has no MOUNTS line")
	}
	for _, m := range strings.Split(raw, ",") {
		if m == "" {
			continue
		}
		mt, err := ParseMount(m)
		if err != nil {
			return nil, err
		}
		s.Mounts = append(s.Mounts, mt)
	}
	slotsRaw, ok := kv["SLOTS"]
	if !ok {
		return nil, fmt.Errorf("resource.txt has no SLOTS line")
	}
	var slots map[string]string
	if err := json.Unmarshal([]byte(slotsRaw), &slots); err != nil {
		return nil, fmt.Errorf("SLOTS: %w", err)
	}
	for k, v := range slots {
		d, err := decimal.NewFromString(v)
		if err != nil {
			return nil, fmt.Errorf("SLOTS[%s]: %w", k, err)
		}
		s.Slots[SlotName(k)] = d
	}
	for k, v := range kv {
		switch {
		case k == "CID" || k == "SCRATCH_SIZE" || k == "MOUNTS" || k == "SLOTS" || k == "UNIFIED_DEVICES":
		case strings.HasSuffix(k, "_SHARES"):
			slot := SlotName(strings.ToLower(strings.TrimSuffix(k, "_SHARES")))
			per := map[DeviceID]decimal.Decimal{}
			for _, entry := range strings.Split(v, ",") {
				id, amt, _ := strings.Cut(entry, ":")
				if id == "" || amt == "" {
					continue
				}
				var d decimal.Decimal
				if types[slot] == SlotBytes {
					n, err := units.ParseBinarySize(amt)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", k, err)
					}
					d = decimal.NewFromInt(n)
				} else {
					var err error
					d, err = decimal.NewFromString(amt)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", k, err)
					}
				}
				per[DeviceID(id)] = d
			}
			s.Allocation[slot] = per
		default:
			s.Extra[k] = v
		}
	}
	return s, nil
}

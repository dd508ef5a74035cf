package wire

import (
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// Extension codes of ai.backend.common.msgpack.
const (
	ExtUUID          int8 = 1
	ExtDatetime      int8 = 2
	ExtDecimal       int8 = 3
	ExtPosixPath     int8 = 4
	ExtPurePosixPath int8 = 5
	ExtEnum          int8 = 6
	ExtImageRef      int8 = 7
	ExtResourceSlot  int8 = 8
	ExtSlotName      int8 = 9
	ExtBinarySize    int8 = 16
	ExtAutoDirPath   int8 = 17
)

// Path is a pathlib path (ext 4, 5 or 17).
type Path string

// SlotName is ai.backend.common.types.SlotName (ext 9).
type SlotName string

// BinarySize is ai.backend.common.types.BinarySize (ext 16).
type BinarySize int64

// ResourceSlot is ai.backend.common.types.ResourceSlot (ext 8).
type ResourceSlot map[string]decimal.Decimal

// Enum is any Python enum member (ext 6). Class is "module.ClassName".
// Value is the member's value when the pickle carried it (CPython >= 3.12);
// for the getattr form (CPython 3.11) Value is derived from Name through a
// table of Backend.AI's known enums, falling back to the name itself.
type Enum struct {
	Class string
	Value string
	Name  string
}

// String returns the enum's value.
func (e Enum) String() string { return e.Value }

// ImageRef is ai.backend.common.docker.ImageRef (ext 7).
type ImageRef struct {
	Name         string `json:"name"`
	Project      string `json:"project"`
	Tag          string `json:"tag"`
	Registry     string `json:"registry"`
	Architecture string `json:"architecture"`
	IsLocal      bool   `json:"is_local"`
}

// Canonical returns registry/project/name:tag with empty parts skipped.
func (r ImageRef) Canonical() string {
	var parts []string
	for _, p := range []string{r.Registry, r.Project, r.Name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	s := strings.Join(parts, "/")
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	return s
}

// ShortName returns the last path component of the image name, as used in
// container names (kernel.{short}.{kernel_id}).
func (r ImageRef) ShortName() string {
	n := r.Name
	if i := strings.LastIndex(n, "/"); i >= 0 {
		n = n[i+1:]
	}
	return n
}

// knownEnumValues maps "module.Class" and member name to the member value,
// for pickles written by CPython 3.11 which carry only the name.
var knownEnumValues = map[string]map[string]string{
	"ai.backend.common.types.SessionTypes": {
		"INTERACTIVE": "interactive", "BATCH": "batch", "INFERENCE": "inference", "SYSTEM": "system",
	},
	"ai.backend.common.types.ClusterMode": {
		"SINGLE_NODE": "single-node", "MULTI_NODE": "multi-node",
	},
	"ai.backend.common.types.AutoPullBehavior": {
		"DIGEST": "digest", "TAG": "tag", "NONE": "none",
	},
	"ai.backend.common.types.MountPermission": {
		"READ_ONLY": "ro", "READ_WRITE": "rw", "RW_DELETE": "wd",
	},
	"ai.backend.common.types.VFolderUsageMode": {
		"GENERAL": "general", "MODEL": "model", "DATA": "data",
	},
}

func enumValueFromName(class, name string) string {
	if m, ok := knownEnumValues[class]; ok {
		if v, ok := m[name]; ok {
			return v
		}
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// TypeName returns a Python-like type name for v, used in TypeError texts.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case bool:
		return "bool"
	case int64, uint64, int:
		return "int"
	case float32, float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case []any:
		return "tuple"
	case Enum:
		return v.(Enum).Class
	case decimal.Decimal:
		return "Decimal"
	case ImageRef:
		return "ImageRef"
	case ResourceSlot:
		return "ResourceSlot"
	case SlotName:
		return "SlotName"
	case BinarySize:
		return "BinarySize"
	case Path:
		return "PosixPath"
	}
	t := fmt.Sprintf("%T", v)
	if strings.HasSuffix(t, "msgpack.Map") {
		return "dict"
	}
	if strings.HasSuffix(t, "UUID") {
		return "UUID"
	}
	return t
}

package event

// VolumeMount carries volume_mounted / volume_unmounted, the answers to
// do_volume_mount / do_volume_unmount.
type VolumeMount struct {
	NodeID       string  `json:"node_id"`
	NodeType     string  `json:"node_type"`
	MountPath    string  `json:"mount_path"`
	QuotaScopeID string  `json:"quota_scope_id"`
	ErrMsg       *string `json:"err_msg"`
}

func (e VolumeMount) LegacyArgs() []any {
	return []any{e.NodeID, e.NodeType, e.MountPath, e.QuotaScopeID, optStr(e.ErrMsg)}
}

// VolumeMounted is volume_mounted.
type VolumeMounted struct{ VolumeMount }

func (VolumeMounted) EventName() string  { return "volume_mounted" }
func (VolumeMounted) Delivery() Delivery { return Broadcast }

// VolumeUnmounted is volume_unmounted.
type VolumeUnmounted struct{ VolumeMount }

func (VolumeUnmounted) EventName() string  { return "volume_unmounted" }
func (VolumeUnmounted) Delivery() Delivery { return Broadcast }

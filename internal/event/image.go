package event

import "github.com/bai-agent/bai-agent/internal/wire"

// ImageRef is the JSON form of ai.backend.common.docker.ImageRef (a
// dataclass: its six fields). Project is null when the image has none.
type ImageRef struct {
	Name         string  `json:"name"`
	Project      *string `json:"project"`
	Tag          string  `json:"tag"`
	Registry     string  `json:"registry"`
	Architecture string  `json:"architecture"`
	IsLocal      bool    `json:"is_local"`
}

// RefOf converts the wire ImageRef.
func RefOf(r wire.ImageRef) *ImageRef {
	out := &ImageRef{Name: r.Name, Tag: r.Tag, Registry: r.Registry, Architecture: r.Architecture, IsLocal: r.IsLocal}
	if r.Project != "" {
		p := r.Project
		out.Project = &p
	}
	return out
}

func (r *ImageRef) legacy() any {
	if r == nil {
		return nil
	}
	return wire.ImageRef{Name: r.Name, Project: deref(r.Project), Tag: r.Tag, Registry: r.Registry, Architecture: r.Architecture, IsLocal: r.IsLocal}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func optStr(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// ImagePullStarted is image_pull_started. Image is str(ImageRef), the
// canonical name.
type ImagePullStarted struct {
	Image     string    `json:"image"`
	AgentID   string    `json:"agent_id"`
	Timestamp float64   `json:"timestamp"`
	ImageRef  *ImageRef `json:"image_ref"`
}

func (ImagePullStarted) EventName() string   { return "image_pull_started" }
func (ImagePullStarted) Delivery() Delivery  { return Anycast }
func (e ImagePullStarted) LegacyArgs() []any { return []any{e.Image, e.AgentID, e.Timestamp} }

// ImagePullFinished is image_pull_finished; Msg is "Image already exists"
// when no pull was needed. The manager moves kernels from PREPARING to
// PREPARED only on this event.
type ImagePullFinished struct {
	Image     string    `json:"image"`
	AgentID   string    `json:"agent_id"`
	Timestamp float64   `json:"timestamp"`
	Msg       *string   `json:"msg"`
	ImageRef  *ImageRef `json:"image_ref"`
}

// MsgImageAlreadyExists is ImagePullFinished.Msg when nothing was pulled.
const MsgImageAlreadyExists = "Image already exists"

func (ImagePullFinished) EventName() string  { return "image_pull_finished" }
func (ImagePullFinished) Delivery() Delivery { return Anycast }
func (e ImagePullFinished) LegacyArgs() []any {
	return []any{e.Image, e.AgentID, e.Timestamp, optStr(e.Msg), e.ImageRef.legacy()}
}

// ImagePullFailed is image_pull_failed.
type ImagePullFailed struct {
	Image    string    `json:"image"`
	AgentID  string    `json:"agent_id"`
	Msg      string    `json:"msg"`
	ImageRef *ImageRef `json:"image_ref"`
}

func (ImagePullFailed) EventName() string   { return "image_pull_failed" }
func (ImagePullFailed) Delivery() Delivery  { return Anycast }
func (e ImagePullFailed) LegacyArgs() []any { return []any{e.Image, e.AgentID, e.Msg} }

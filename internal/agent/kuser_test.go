package agent

import (
	"testing"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A root agent with kernel-uid -1 (upstream's default: "the agent's own
// uid") never hands its root to user code: the kernel gets the image's own
// work user, else 1000, looked up once per image. uid 0 only when
// configured or sent by the manager.
func TestKernelUserNeverImplicitRoot_Fake(t *testing.T) {
	testutil.RequireRoot(t)
	zero, five := 0, 5
	for _, tc := range []struct {
		name      string
		passwd    string // "" : the image has none
		kernelUID int
		uid       *int
		want      string
	}{
		{"image work user", "root:x:0:0::/root:/bin/sh\nwork:x:1001:1002::/home/work:/bin/sh\n", -1, nil, "1001:1002"},
		{"no passwd", "", -1, nil, "1000:1000"},
		{"work is root", "work:x:0:0::/home/work:/bin/sh\n", -1, nil, "1000:1000"},
		{"configured root (gid still implicit)", "", 0, nil, "0:1000"},
		{"configured uid", "", 2000, nil, "2000:1000"},
		{"manager's uid 0", "", -1, &zero, "0:1000"},
		{"manager's uid", "", -1, &five, "5:1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore(t, func(cfg *config.Config) { cfg.Container.KernelUID = tc.kernelUID }, nil)
			if tc.passwd != "" {
				c.be.SetImageFile(fakeImage, "/etc/passwd", []byte(tc.passwd))
			}
			for i := 0; i < 2; i++ {
				info, err := c.create(func(cfg *CreationConfig) { cfg.UID = tc.uid })
				if err != nil {
					t.Fatal(err)
				}
				k, _ := c.agent.Kernel(info.ID)
				if got := k.Environ["LOCAL_USER_ID"] + ":" + k.Environ["LOCAL_GROUP_ID"]; got != tc.want {
					t.Fatalf("LOCAL_USER_ID:LOCAL_GROUP_ID = %s, want %s", got, tc.want)
				}
			}
			if n := c.be.CallCount(fake.CallReadImageFile); n > 1 {
				t.Fatalf("the image's passwd was read %d times (once per image)", n)
			}
		})
	}
}

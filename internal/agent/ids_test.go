package agent

import (
	"testing"
)

// The manager's uid, main_gid and supplementary_gids become
// LOCAL_USER_ID/LOCAL_GROUP_ID/ADDITIONAL_GIDS with no range check; uid_t
// is 32 bits, so 4294967296 is root to setuid(2) while every "uid != 0"
// check (the entrypoint's, doctor's) passes, and 4294967295 ((uid_t)-1)
// makes setuid/setgid fail, which the entrypoint logs and runs on as
// root. validateCreation refuses ids outside 0..4294967294.
func TestCreationIDsBeyondUIDTRefused(t *testing.T) {
	t.Parallel()
	big, minus1 := 1<<32, 1<<32-1
	for name, cfg := range map[string]*CreationConfig{
		"uid 2^32":               {UID: &big},
		"uid (uid_t)-1":          {UID: &minus1},
		"main_gid 2^32":          {MainGID: &big},
		"supplementary_gid 2^32": {SupplementaryGIDs: []int{big}},
	} {
		if err := validateCreation(cfg); err == nil {
			t.Errorf("%s accepted: the kernel takes it as uid/gid 0 or refuses it (then the entrypoint stays root)", name)
		}
	}
}

package observer

import (
	"testing"
)

func TestDecideOrphans(t *testing.T) {
	const agentLC = 1_700_000_000
	boundary := int64(agentLC - OrphanThreshold)
	k := func(id string) Kernel { return Kernel{ID: id, SessionID: "s-" + id} }
	stamp := func(v int64) map[string]string {
		return map[string]string{"presence": "1", "last_presence": "1", "last_check": itoa(v)}
	}
	for _, tc := range []struct {
		name   string
		hash   map[string]string // nil: no key
		orphan bool
	}{
		{"no presence hash", nil, false},
		{"empty hash", map[string]string{}, false},
		{"hash made by the manager's HSET alone (no presence field)", map[string]string{"last_check": itoa(boundary - 100)}, false},
		{"never checked (no last_check)", map[string]string{"presence": "1", "last_presence": itoa(agentLC)}, false},
		{"last_check not an integer", map[string]string{"presence": "1", "last_check": "12.5"}, false},
		{"last_check empty", map[string]string{"presence": "1", "last_check": ""}, false},
		{"exactly agent_last_check - 600: kept (strict <)", stamp(boundary), false},
		{"one second newer than the boundary", stamp(boundary + 1), false},
		{"checked with the agent", stamp(agentLC), false},
		{"checked after the agent (clock skew)", stamp(agentLC + 5), false},
		{"one second older than the boundary: orphan", stamp(boundary - 1), true},
		{"long ago: orphan", stamp(0), true},
		{"spaces around the stamp, as int() allows", map[string]string{"presence": "0", "last_check": " " + itoa(boundary-1) + " "}, true},
		{"presence 0 does not matter", map[string]string{"presence": "0", "last_check": itoa(boundary - 1)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			presence := map[string]map[string]string{}
			if tc.hash != nil {
				presence["k1"] = tc.hash
			}
			// An unrelated kernel's hash must not leak into k1's verdict.
			presence["other"] = stamp(0)
			got := DecideOrphans(agentLC, []Kernel{k("k1")}, presence)
			if len(got) != 1 || got[0].ID != "k1" || got[0].SessionID != "s-k1" {
				t.Fatalf("verdicts %+v", got)
			}
			if got[0].Orphan != tc.orphan {
				t.Errorf("orphan = %v (%s), want %v", got[0].Orphan, got[0].Why, tc.orphan)
			}
			if got[0].Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestDecideOrphansMany(t *testing.T) {
	const agentLC = 10_000
	ks := []Kernel{{ID: "a", SessionID: "sa"}, {ID: "b", SessionID: "sb"}, {ID: "c", SessionID: "sc"}}
	got := DecideOrphans(agentLC, ks, map[string]map[string]string{
		"a": {"presence": "1", "last_check": "9000"}, // 9000 < 9400
		"b": {"presence": "1", "last_check": "9400"}, // boundary
		"c": {"presence": "1", "last_check": "1"},
	})
	var orphans []string
	for _, v := range got {
		if v.Orphan {
			orphans = append(orphans, v.ID+"/"+v.SessionID)
		}
	}
	if len(orphans) != 2 || orphans[0] != "a/sa" || orphans[1] != "c/sc" {
		t.Errorf("orphans %v, want [a/sa c/sc]", orphans)
	}
}

func TestParseReport(t *testing.T) {
	const id = "0d7c9a4e-58c6-4b8e-9d2b-3f1e2a6b7c8d"
	for _, tc := range []struct {
		name, body string
		wantErr    bool
		want       Report
	}{
		{"full", `{"ID":"` + id + `","CID":"abc","reason":"hang-timeout"}`, false, Report{File: "f", KernelID: id, ContainerID: "abc", Reason: "hang-timeout"}},
		{"no reason", `{"ID":"` + id + `","CID":"abc"}`, false, Report{File: "f", KernelID: id, ContainerID: "abc"}},
		{"upper-case id is canonicalised", `{"ID":"0D7C9A4E-58C6-4B8E-9D2B-3F1E2A6B7C8D","CID":"abc"}`, false, Report{File: "f", KernelID: id, ContainerID: "abc"}},
		{"hex id without dashes", `{"ID":"0d7c9a4e58c64b8e9d2b3f1e2a6b7c8d"}`, false, Report{File: "f", KernelID: id}},
		{"no ID", `{"CID":"abc"}`, true, Report{}},
		{"ID not a string", `{"ID":12}`, true, Report{}},
		{"ID not a UUID", `{"ID":"../../etc"}`, true, Report{}},
		{"not JSON", `ID=` + id, true, Report{}},
		{"JSON array", `["` + id + `"]`, true, Report{}},
		{"reason not a string", `{"ID":"` + id + `","reason":5}`, false, Report{File: "f", KernelID: id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReport("f", []byte(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTerminationReason(t *testing.T) {
	for reason, want := range map[string]string{
		"":                     ReasonAnomalyDetected,
		"crypto mining":        ReasonAnomalyDetected,
		"anomaly-detected":     "anomaly-detected",
		"hang-timeout":         "hang-timeout",
		"force-terminated":     "force-terminated",
		"not-found-in-manager": "not-found-in-manager",
		"HANG-TIMEOUT":         ReasonAnomalyDetected, // the enum's values are lower case
	} {
		if got := (Report{Reason: reason}).TerminationReason(); got != want {
			t.Errorf("reason %q -> %q, want %q", reason, got, want)
		}
	}
}

func TestDecideAbuse(t *testing.T) {
	kernels := []Kernel{{ID: "k1", SessionID: "s1"}, {ID: "k2", SessionID: "s2"}}
	reports := []Report{
		{File: "report.a.json", KernelID: "k1", Reason: "hang-timeout"},
		{File: "report.b.json", KernelID: "k9"}, // not registered
		{File: "report.c.json", KernelID: "k2", Reason: "mining"},
		{File: "report.d.json", KernelID: "k1"}, // k1 again
	}
	t.Run("terminate", func(t *testing.T) {
		d := DecideAbuse(reports, kernels, true)
		if len(d.Hash) != 2 || d.Hash["k1"] != AbuseCleaning || d.Hash["k2"] != AbuseCleaning {
			t.Errorf("hash %v", d.Hash)
		}
		want := []AbuseTarget{
			{Kernel: kernels[0], Reason: "hang-timeout", File: "report.a.json"},
			{Kernel: kernels[1], Reason: ReasonAnomalyDetected, File: "report.c.json"},
			{Kernel: kernels[0], File: "report.d.json"},
		}
		if len(d.Terminate) != len(want) {
			t.Fatalf("terminate %+v", d.Terminate)
		}
		for i := range want {
			if d.Terminate[i] != want[i] {
				t.Errorf("terminate[%d] = %+v, want %+v", i, d.Terminate[i], want[i])
			}
		}
	})
	t.Run("detect only", func(t *testing.T) {
		d := DecideAbuse(reports, kernels, false)
		if len(d.Terminate) != 0 {
			t.Errorf("terminate %+v", d.Terminate)
		}
		if len(d.Hash) != 3 || d.Hash["k1"] != AbuseDetected || d.Hash["k2"] != AbuseDetected || d.Hash["k9"] != AbuseDetected {
			t.Errorf("hash %v", d.Hash)
		}
	})
	t.Run("no reports", func(t *testing.T) {
		d := DecideAbuse(nil, kernels, true)
		if d.Hash == nil || len(d.Hash) != 0 || len(d.Terminate) != 0 {
			t.Errorf("%+v", d)
		}
	})
}

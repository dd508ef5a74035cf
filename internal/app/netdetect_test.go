package app

import "testing"

func TestDetectHost(t *testing.T) {
	tests := []struct {
		name, hint, fallback, want, wantErr string
	}{
		{"loopback subnet", "127.0.0.0/8", "", "127.0.0.1", ""},
		{"configured fallback", "", "10.1.2.3", "10.1.2.3", ""},
		{"zero-length hint falls back", "0.0.0.0/0", "10.1.2.3", "10.1.2.3", ""},
		{"no address in subnet", "198.51.100.0/24", "", "", "no local address"},
		{"malformed hint", "not-a-cidr", "", "", "subnet hint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := detectHost(tt.hint, tt.fallback)
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q %v, want %q", got, err, tt.want)
			}
		})
	}
	if h, err := detectHost("", "0.0.0.0"); err != nil || unspecified(h) {
		t.Fatalf("unspecified fallback gave %q %v", h, err)
	}
}

func TestDetectRegion(t *testing.T) {
	t.Setenv("BACKEND_REGION", "")
	if got := detectRegion(""); got != "local" {
		t.Fatalf("default region %q", got)
	}
	t.Setenv("BACKEND_REGION", "eu-west-1")
	if got := detectRegion(""); got != "eu-west-1" {
		t.Fatalf("env region %q", got)
	}
	if got := detectRegion("on-prem/a"); got != "on-prem/a" {
		t.Fatalf("configured region %q", got)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

package agent

import (
	"context"
	"encoding/json"
	"io/fs"

	"github.com/bai-agent/bai-agent/internal/safefs"
)

// maxAgentFile bounds what the agent reads back from a kernel's scratch
// (its own environ.txt, resource.txt, kconfig.json, recovery.json, and
// the Python agent's kconfig.dat): far above any real one, far below
// what would hurt the agent.
const maxAgentFile = 8 << 20

// writeScratchFile writes one of the agent's files into a kernel's
// scratch folder dir (config/, or work/ for the user's files) through
// safefs: a synced temporary file renamed over rel, nothing beneath dir
// followed or opened, under safefs's deadline.
func writeScratchFile(dir, rel string, data []byte, perm fs.FileMode, owner safefs.Owner) error {
	_, err := safefs.Do(context.Background(), "write "+rel, func(ctx context.Context) (struct{}, error) {
		r, err := safefs.OpenRoot(dir)
		if err != nil {
			return struct{}{}, err
		}
		defer r.Close()
		return struct{}{}, r.WriteFile(rel, data, safefs.WriteOptions{Perm: perm, Owner: owner, Mkdir: true, DirPerm: 0o755, Sync: true})
	})
	return err
}

// readScratchFile reads back a file of a kernel's scratch folder (at most
// maxAgentFile bytes, a regular file only).
func readScratchFile(dir, rel string) ([]byte, error) {
	return safefs.Do(context.Background(), "read "+rel, func(ctx context.Context) ([]byte, error) {
		r, err := safefs.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return r.ReadFile(rel, maxAgentFile)
	})
}

func writeJSON(dir, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeScratchFile(dir, name, b, 0o644, safefs.NoOwner)
}

func readJSON(dir, name string, v any) error {
	b, err := readScratchFile(dir, name)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

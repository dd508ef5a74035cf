// Package config loads agent.toml: Backend.AI's sections and kebab-case keys
// (snake_case accepted too), its defaults, BACKEND_* environment overrides
// and validation.
//
// Loading never silently drops anything: keys the agent does not know are
// returned as warnings with file, line and column (the real agent allows
// unknown keys, so they do not stop start-up), while a value of the wrong
// type or out of range is an error naming the key and its position.
// Keys of upstream's schema that bai-agent accepts but does not implement
// are checked against the table in unsupported.go: neutral at upstream's
// default, a warning where ignoring a stock value is harmless, and a
// refusal (*UnsupportedError) otherwise; see docs/compatibility.md.
//
// Each value remembers the layer that set it (default, file position,
// environment variable, etcd key; see Config.MarkSource), so that
// "bai-agent config show --effective" can answer an operator's first
// question about a surprising setting: where did this come from?
package config

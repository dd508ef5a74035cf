// Package etcdconfig reads Backend.AI's global configuration from etcd
// (key prefix /sorna/{namespace}/) and registers the agent under
// nodes/agents/{id}. Every read has a deadline; a missing or malformed
// value is an error naming the key.
package etcdconfig

// Package discovery registers the agent in etcd service discovery
// ([service-discovery] type = "etcd"), as upstream's ETCDServiceDiscovery
// driven by ServiceDiscoveryLoop does (the Redis backend is the
// service_discovery.agent.{id} hash that internal/events writes).
//
// Layout: the agent's ServiceMetadata.model_dump(), flattened with
// AsyncEtcd.put_prefix in the global scope under
// /sorna/{namespace}/ai/backend/service_discovery/agent/{id}/: keys id,
// display_name, service_group, version, endpoint/{address,port,protocol,
// prometheus_address}, health_status/{registration_time,last_heartbeat},
// labels/{name} (none when there are no labels); every value is Python's
// str() of the field (port "6003", times "1718000000.123456").
//
// Lifetime: as upstream, no lease: the entry is written at start and
// rewritten (last_heartbeat) every Interval (60 s); every SweepInterval
// (10 min) entries of any group whose last_heartbeat is older than
// HeartbeatTimeout (5 min) are removed, as upstream's sweep does. Close
// removes the agent's entry. (Upstream's loop means to unregister on
// close but cancels its task before it gets there, so its entry lingers
// until another component's sweep; bai-agent removes it.)
package discovery

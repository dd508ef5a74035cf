// Package redisconn turns the control plane's Redis settings (etcd
// config/redis, as Backend.AI lays them out) into go-redis clients: a
// plain server or a Sentinel-managed one (the client follows failovers),
// password and ACL username, TLS, and per-role overrides
// (override_configs.{statistics,live,image,stream,container_log,bgtask}),
// each role on its own database number as the Python agent uses them.
package redisconn

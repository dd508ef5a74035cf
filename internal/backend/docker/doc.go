// Package docker implements backend.Backend over the Docker Engine API
// with github.com/moby/moby/client: one long-lived client, API version
// negotiated (Engine API 1.41 and newer), every call bounded by the
// caller's context.
package docker

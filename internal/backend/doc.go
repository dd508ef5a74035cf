// Package backend is the container-runtime contract the agent core uses.
// The core never imports Docker types: it describes a container with
// ContainerSpec and reads back Container and Event values. backend/docker
// is the production implementation; tests of the core may use their own.
package backend

package agent

import (
	"errors"
	"fmt"
)

// Error kinds of the core. The RPC edge maps them to the Python exception
// names the manager shows (see rpc.ExceptionName).
var (
	ErrKernelNotFound     = errors.New("kernel not found")
	ErrKernelExists       = errors.New("kernel creation already in progress")
	ErrImageNotAvailable  = errors.New("image not available")
	ErrInvalidImage       = errors.New("invalid kernel image")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrCreationFailed     = errors.New("container creation failed")
	ErrUnsupportedArch    = errors.New("unsupported image architecture")
	ErrAgentShuttingDown  = errors.New("agent is shutting down")
	ErrRestartUnsupported = errors.New("kernel cannot be restarted")
	ErrPullTimeout        = errors.New("image pull timeout")
	// Service-port and inference-session errors, named as upstream's.
	ErrReservedPort            = errors.New("reserved port")
	ErrPortConflict            = errors.New("port conflict")
	ErrModelFolderNotSpecified = errors.New("model folder not specified")
	ErrModelDefinitionNotFound = errors.New("model definition not found")
	ErrModelDefinitionEmpty    = errors.New("model definition is empty")
	ErrInvalidModelDefinition  = errors.New("invalid model definition")
)

func kernelErr(id string, err error) error { return fmt.Errorf("kernel %s: %w", id, err) }

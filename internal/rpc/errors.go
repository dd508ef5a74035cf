package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/rpc/callosum"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/ports"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/vfolder"
)

// PyError is an error that already carries its Python exception name.
type PyError struct {
	Name string
	Msg  string
}

func (e *PyError) Error() string { return e.Name + ": " + e.Msg }

func typeError(format string, args ...any) error {
	return &PyError{Name: "TypeError", Msg: fmt.Sprintf(format, args...)}
}

// exceptionTable maps core error kinds to the names the Python agent
// raises, checked in order.
var exceptionTable = []struct {
	err  error
	name string
}{
	{resource.ErrInsufficient, "InsufficientResource"},
	{resource.ErrNotMultipleOfQuantum, "NotMultipleOfQuantum"},
	{resource.ErrInvalidCombination, "InvalidResourceCombination"},
	{resource.ErrInvalidArgument, "InvalidResourceArgument"},
	{resource.ErrUnsupportedResource, "UnsupportedResource"},
	{ports.ErrExhausted, "PortPoolExhaustedError"},
	{vfolder.ErrInvalidMount, "InvalidVFolderMount"},
	{agent.ErrKernelExists, "ResourceError"},
	{agent.ErrRunnerNotReady, "KernelRunnerNotInitializedError"},
	{agent.ErrPermission, "PermissionError"},
	{agent.ErrFileNotFound, "FileNotFoundError"},
	{agent.ErrTooLarge, "ValueError"},
	{agent.ErrUnsupported, "NotImplementedError"},
	{agent.ErrKernelNotFound, "KeyError"},
	{agent.ErrImageNotAvailable, "ImageNotAvailable"},
	{agent.ErrPullTimeout, "ImagePullTimeoutError"},
	{agent.ErrInvalidImage, "InvalidImageError"},
	{agent.ErrUnsupportedArch, "ImageArchitectureMismatchError"},
	{agent.ErrReservedPort, "ReservedPortError"},
	{agent.ErrPortConflict, "PortConflictError"},
	{agent.ErrModelFolderNotSpecified, "ModelFolderNotSpecifiedError"},
	{agent.ErrModelDefinitionNotFound, "ModelDefinitionNotFoundError"},
	{agent.ErrModelDefinitionEmpty, "ModelDefinitionEmptyError"},
	{agent.ErrInvalidModelDefinition, "ValidationError"},
	{agent.ErrInvalidArgument, "ValueError"},
	{agent.ErrCreationFailed, "ContainerCreationFailedError"},
	{agent.ErrRestartUnsupported, "RuntimeError"},
	{agent.ErrAgentShuttingDown, "RuntimeError"},
	{kernel.ErrIllegalTransition, "RuntimeError"},
	{context.DeadlineExceeded, "TimeoutError"},
	// What aiodocker raises when dockerd does not answer.
	{backend.ErrUnavailable, "DockerError"},
}

// ExceptionName returns the Python exception name for err.
func ExceptionName(err error) string {
	var pe *PyError
	if errors.As(err, &pe) {
		return pe.Name
	}
	for _, e := range exceptionTable {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "RuntimeError"
}

func errMessage(err error) string {
	var pe *PyError
	if errors.As(err, &pe) {
		return pe.Msg
	}
	return err.Error()
}

// PyRepr writes s as Python's repr() of a str.
func PyRepr(s string) string {
	quote := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, "\"") {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// failureMeta renders [name, repr, traceback] for err.
func failureMeta(err error) []byte {
	name := ExceptionName(err)
	msg := errMessage(err)
	repr := name + "(" + PyRepr(msg) + ")"
	tb := "Traceback (most recent call last):\n  (raised by bai-agent)\n" + name + ": " + msg + "\n"
	return callosum.ErrorMeta(name, repr, tb)
}

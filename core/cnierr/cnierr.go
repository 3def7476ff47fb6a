// Package cnierr builds CNI errors with the codes the spec assigns, so every
// plugin reports the same failure the same way.
package cnierr

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// Invalid reports bad configuration (code 7), naming the offending key.
func Invalid(key, format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig,
		fmt.Sprintf("invalid %q: %s", key, fmt.Sprintf(format, a...)), "")
}

// TryAgain reports a transient condition (code 11): the runtime should retry.
func TryAgain(format string, a ...any) *types.Error {
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf(format, a...), "")
}

// NotAvailable reports that the node cannot serve ADDs yet (code 50).
func NotAvailable(format string, a ...any) *types.Error {
	return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf(format, a...), "")
}

// IO reports a failure reading or writing node state (code 5).
func IO(format string, a ...any) *types.Error {
	return types.NewError(types.ErrIOFailure, fmt.Sprintf(format, a...), "")
}

// Internal wraps any other failure (code 999), keeping the message.
func Internal(err error) *types.Error {
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// Wrap returns a CNI error that says what failed (format) and keeps err as
// its cause, for errors.Is and errors.As: the code is that of the CNI error
// in err's chain if it has one, internal (999) otherwise.
func Wrap(err error, format string, a ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, a...)
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return &wrapped{&types.Error{Code: cniErr.Code, Msg: msg + ": " + cniErr.Msg, Details: cniErr.Details}, err}
	}
	return &wrapped{types.NewError(types.ErrInternal, msg+": "+err.Error(), ""), err}
}

// WithCode is err as a CNI error with code, err's message and err as its
// cause: for an error whose kind decides the code wherever it was wrapped.
func WithCode(code uint, err error) error {
	if err == nil {
		return nil
	}
	return &wrapped{types.NewError(code, err.Error(), ""), err}
}

// wrapped is a CNI error with its cause. errors.As finds the CNI error
// first (skel prints that one), errors.Is and As then search the cause.
type wrapped struct {
	cni   *types.Error
	cause error
}

func (w *wrapped) Error() string   { return w.cni.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.cni, w.cause} }

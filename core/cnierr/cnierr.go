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

// Wrap returns err unchanged if it already is a CNI error (anywhere in its
// chain), otherwise an internal error with context.
func Wrap(err error, format string, a ...any) error {
	if err == nil {
		return nil
	}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		return &types.Error{Code: cniErr.Code, Msg: fmt.Sprintf(format, a...) + ": " + cniErr.Msg, Details: cniErr.Details}
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf(format, a...)+": "+err.Error(), "")
}

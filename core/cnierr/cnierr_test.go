package cnierr

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// Wrap gives the runtime a CNI error (code and message) and keeps the
// cause for the caller's errors.Is and errors.As.
func TestWrapKeepsCause(t *testing.T) {
	cause := fmt.Errorf("open pin: %w", os.ErrNotExist)
	err := Wrap(cause, "veth-ebpf DEL")
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrInternal || cniErr.Msg != "veth-ebpf DEL: open pin: file does not exist" {
		t.Errorf("internal: %#v", cniErr)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%v lost its cause", err)
	}

	tryAgain := TryAgain("store locked")
	err = Wrap(fmt.Errorf("open: %w", tryAgain), "dsr ADD")
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater || cniErr.Msg != "dsr ADD: store locked" {
		t.Errorf("CNI code kept: %#v", cniErr)
	}
	if !errors.Is(err, tryAgain) || err.Error() != cniErr.Error() {
		t.Errorf("%v lost the inner CNI error", err)
	}
	if Wrap(nil, "x") != nil {
		t.Error("Wrap(nil) is not nil")
	}
}

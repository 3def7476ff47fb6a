package notfound

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestIs(t *testing.T) {
	_, linkErr := netlink.LinkByName("braid-no-such-link")
	if linkErr == nil {
		t.Fatal("a link called braid-no-such-link exists")
	}
	for _, err := range []error{
		linkErr, fmt.Errorf("host veth: %w", linkErr), os.ErrNotExist, ebpf.ErrKeyNotExist,
		fmt.Errorf("pin: %w", unix.ENOENT), unix.ENODEV,
	} {
		if !Is(err) {
			t.Errorf("%v: not a not-found", err)
		}
	}
	for _, err := range []error{nil, unix.EPERM, fmt.Errorf("netlink: %w", unix.EACCES), errors.New("link not found")} {
		if Is(err) {
			t.Errorf("%v: taken for a not-found", err)
		}
	}
}

// Package notfound says whether an error means "it is not there" (a link, a
// file or pin, a map key, a netns) rather than any other failure: callers
// that treat absence as normal (DEL, GC, CHECK's "missing") must not treat
// EPERM or a broken netlink socket the same way.
package notfound

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Is reports whether err, anywhere in its chain, is a not-found: no such
// link (netlink.LinkNotFoundError, ENODEV), no such file or pin
// (os.ErrNotExist, ENOENT) or no such map key (ebpf.ErrKeyNotExist).
func Is(err error) bool {
	if err == nil {
		return false
	}
	var link netlink.LinkNotFoundError
	return errors.As(err, &link) || errors.Is(err, os.ErrNotExist) || errors.Is(err, ebpf.ErrKeyNotExist) ||
		errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// Package tcx attaches a plugin's programs to an interface with tcx, after
// whatever is already there (so conflist order is program order), and pins
// the link so the attachment outlives the short-lived CNI process.
package tcx

import (
	"errors"
	"fmt"
	"os"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Direction is where on the interface a program runs.
type Direction = ebpf.AttachType

const (
	Ingress = ebpf.AttachTCXIngress
	Egress  = ebpf.AttachTCXEgress
)

// Attach makes prog run at dir on ifindex, pinned at pin. If a link is
// already pinned there for the same interface, its program is replaced in
// place (no gap); otherwise a new link is appended after existing programs.
func Attach(ifindex int, dir Direction, prog *ebpf.Program, pin string) error {
	return attach(ifindex, dir, prog, pin, link.Tail())
}

// AttachFirst is Attach for a program that must see packets before the
// programs already there (dsr on the overlay device, ahead of decap delivery).
func AttachFirst(ifindex int, dir Direction, prog *ebpf.Program, pin string) error {
	return attach(ifindex, dir, prog, pin, link.Head())
}

func attach(ifindex int, dir Direction, prog *ebpf.Program, pin string, anchor link.Anchor) error {
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		defer l.Close()
		if attachedTo(l) == ifindex {
			return l.Update(prog)
		}
		if err := l.Unpin(); err != nil {
			return fmt.Errorf("tcx: replace stale pin %s: %w", pin, err)
		}
	}
	l, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   prog,
		Attach:    dir,
		Anchor:    anchor,
	})
	if err != nil {
		return fmt.Errorf("tcx: attach to ifindex %d: %w", ifindex, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("tcx: pin %s: %w", pin, err)
	}
	return nil
}

// Detach removes the pin, which detaches the program if the interface still
// exists. Absent is fine.
func Detach(pin string) error { return bpffs.Remove(pin) }

// Verify checks that the link pinned at pin is attached to ifindex.
func Verify(pin string, ifindex int) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no link pinned at %s", pin)
	}
	if err != nil {
		return fmt.Errorf("link pinned at %s: %w", pin, err)
	}
	defer l.Close()
	if got := attachedTo(l); got != ifindex {
		return fmt.Errorf("link pinned at %s is attached to ifindex %d, want %d", pin, got, ifindex)
	}
	return nil
}

// attachedTo is the ifindex a tcx link is attached to, or 0 if detached.
func attachedTo(l link.Link) int {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	tcx := info.TCX()
	if tcx == nil {
		return 0
	}
	return int(tcx.Ifindex)
}

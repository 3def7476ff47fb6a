// Package tcx attaches a plugin's programs to an interface with tcx, after
// whatever is already there (so conflist order is program order) or, for a
// program that must see packets first, at the head; and pins the link so
// the attachment outlives the short-lived CNI process.
package tcx

import (
	"errors"
	"fmt"
	"os"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
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

// AttachHead makes prog run first at dir on ifindex, pinned at pin, and
// keeps it first: a link pinned there that another program got ahead of
// (a repair re-attached it after the others, or something attached at the
// head since) is replaced by a new link at the head. The new link is
// attached before the old one is detached, so every packet meets one of
// them. It reports whether it had to move the program.
func AttachHead(ifindex int, dir Direction, prog *ebpf.Program, pin string) (moved bool, err error) {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil || attachedTo(l) != ifindex {
		if l != nil {
			l.Close()
		}
		return false, attach(ifindex, dir, prog, pin, link.Head())
	}
	defer l.Close()
	if First(l, ifindex, dir) == nil {
		return false, l.Update(prog)
	}
	return true, moveToHead(l, ifindex, dir, prog, pin)
}

// moveToHead replaces old, pinned at pin, by a link of prog at the head.
func moveToHead(old link.Link, ifindex int, dir Direction, prog *ebpf.Program, pin string) error {
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: dir, Anchor: link.Head()})
	if errors.Is(err, unix.EEXIST) {
		// prog is old's own program: it cannot be attached twice, so
		// old goes first (a moment with neither).
		if err := errors.Join(old.Detach(), old.Unpin()); err != nil {
			return fmt.Errorf("tcx: detach %s: %w", pin, err)
		}
		return attach(ifindex, dir, prog, pin, link.Head())
	}
	if err != nil {
		return fmt.Errorf("tcx: attach to the head of ifindex %d: %w", ifindex, err)
	}
	defer l.Close()
	if err := old.Unpin(); err != nil {
		l.Detach()
		return fmt.Errorf("tcx: unpin %s: %w", pin, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Detach()
		old.Detach()
		return fmt.Errorf("tcx: pin %s: %w", pin, err)
	}
	return old.Detach()
}

// First returns an error naming the program that runs ahead of l's at dir
// on ifindex, if any.
func First(l link.Link, ifindex int, dir Direction) error {
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("link info: %w", err)
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: dir})
	if err != nil {
		return fmt.Errorf("tcx: programs of ifindex %d: %w", ifindex, err)
	}
	if len(res.Programs) == 0 || res.Programs[0].ID == info.Program {
		return nil
	}
	name := ""
	if p, err := ebpf.NewProgramFromID(res.Programs[0].ID); err == nil {
		if pi, err := p.Info(); err == nil {
			name = " (" + pi.Name + ")"
		}
		p.Close()
	}
	return fmt.Errorf("program %d%s runs before %d on ifindex %d", res.Programs[0].ID, name, info.Program, ifindex)
}

// VerifyFirst is Verify for a link whose program must run first at dir.
func VerifyFirst(pin string, ifindex int, dir Direction) error {
	if err := Verify(pin, ifindex); err != nil {
		return err
	}
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return fmt.Errorf("link pinned at %s: %w", pin, err)
	}
	defer l.Close()
	if err := First(l, ifindex, dir); err != nil {
		return fmt.Errorf("link pinned at %s must run first: %w", pin, err)
	}
	return nil
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

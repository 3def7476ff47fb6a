package harness

// What the kernel has attached to an interface, seen from outside the
// plugins (bpftool 7.1 from Debian does not list tcx attachments).

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
)

// AttachedProgram is one program at a tcx hook, in run order.
type AttachedProgram struct {
	ID   ebpf.ProgramID
	Name string // the kernel's (truncated) program name
	Tag  string
}

// TCXPrograms lists the programs attached with tcx to ifName inside ns, at
// ingress or egress, in the order they run.
func (ns *NS) TCXPrograms(t testing.TB, ifName string, ingress bool) []AttachedProgram {
	t.Helper()
	attach := ebpf.AttachTCXEgress
	if ingress {
		attach = ebpf.AttachTCXIngress
	}
	var out []AttachedProgram
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: attach})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			ap := AttachedProgram{ID: p.ID}
			if prog, err := ebpf.NewProgramFromID(p.ID); err == nil {
				if info, err := prog.Info(); err == nil {
					ap.Name, ap.Tag = info.Name, info.Tag
				}
				prog.Close()
			}
			out = append(out, ap)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tcx programs on %s in %s: %v", ifName, ns, err)
	}
	return out
}

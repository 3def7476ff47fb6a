package chained

import (
	"fmt"
	"strings"

	"github.com/braid-cni/braid/core/bpffs"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/braid-cni/braid/core/config"
	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/core/tcx"
	"github.com/cilium/ebpf/link"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
)

func (p Plugin) cmdAdd(args *skel.CmdArgs) error {
	c, err := p.open(args.StdinData, "ADD")
	if err != nil {
		return err
	}
	defer c.Close()
	std := config.Standard(c.conf)
	a, err := chain.FromPrevResult(std.PrevResult, p.Name)
	if err != nil {
		return err
	}
	report := &plugin.Report{Plugin: p.Name}
	if err := c.dp.Reconcile(c.cluster, report); err != nil {
		return cnierr.Wrap(err, "%s ADD: node datapath", p.Name)
	}
	for _, prob := range report.Problems {
		c.log.Warn("node datapath", "problem", prob)
	}
	if err := c.dp.AdjustPod(c.cluster, a); err != nil {
		return cnierr.Wrap(err, "%s ADD", p.Name)
	}
	if prog := c.dp.PodProgram(); prog != nil {
		host, err := netlinksafe.LinkByName(a.Host.Name)
		if err != nil {
			return cnierr.Wrap(err, "%s ADD: host interface %s from prevResult", p.Name, a.Host.Name)
		}
		if err := tcx.Attach(host.Attrs().Index, tcx.Ingress, prog, c.podPin(p.Name, args.ContainerID, args.IfName)); err != nil {
			return cnierr.Wrap(err, "%s ADD", p.Name)
		}
	}
	c.log.Info("added", "container", args.ContainerID, "host", a.Host.Name)
	return types.PrintResult(a.Result, std.CNIVersion)
}

// cmdDel removes the pod's link pin (the interface plugin deletes the veth,
// which detaches the program; the pin would outlive it). Absent is fine.
func (p Plugin) cmdDel(args *skel.CmdArgs) error {
	conf, err := p.Parse(args.StdinData)
	if err != nil {
		return err
	}
	pin := bpffs.LinkPin(conf.Shared().BPFRoot, p.Name, store.AttachmentID(args.ContainerID, args.IfName)+"_ingress")
	return cnierr.Wrap(tcx.Detach(pin), "%s DEL", p.Name)
}

func (p Plugin) cmdCheck(args *skel.CmdArgs) error {
	c, err := p.open(args.StdinData, "CHECK")
	if err != nil {
		return err
	}
	defer c.Close()
	a, err := chain.FromPrevResult(config.Standard(c.conf).PrevResult, p.Name)
	if err != nil {
		return err
	}
	if err := c.dp.CheckNode(c.cluster); err != nil {
		return cnierr.Wrap(err, "%s CHECK: node", p.Name)
	}
	if err := c.dp.CheckPod(c.cluster, a); err != nil {
		return cnierr.Wrap(err, "%s CHECK: pod", p.Name)
	}
	if c.dp.PodProgram() == nil {
		return nil
	}
	host, err := netlinksafe.LinkByName(a.Host.Name)
	if err != nil {
		return cnierr.Wrap(err, "%s CHECK: host interface %s", p.Name, a.Host.Name)
	}
	return cnierr.Wrap(tcx.Verify(c.podPin(p.Name, args.ContainerID, args.IfName), host.Attrs().Index), "%s CHECK: pod program", p.Name)
}

// cmdGC removes the pod pins of attachments that are not valid any more,
// then reconciles the node (dropping state for nodes that left).
func (p Plugin) cmdGC(args *skel.CmdArgs) error {
	c, err := p.open(args.StdinData, "GC")
	if err != nil {
		return err
	}
	defer c.Close()
	std := config.Standard(c.conf)
	valid := map[string]bool{}
	for _, v := range std.ValidAttachments {
		valid[store.AttachmentID(v.ContainerID, v.IfName)+"_ingress"] = true
	}
	if err := c.keepOtherNetworks(std.Name, valid); err != nil {
		return cnierr.Wrap(err, "%s GC", p.Name)
	}
	return cnierr.Wrap(c.gc(p.Name, valid, &plugin.Report{}), "%s GC", p.Name)
}

// keepOtherNetworks marks valid the pod pins of the store's attachments
// that belong to another network than this GC's: a CNI GC speaks for its
// own network only.
func (c *call) keepOtherNetworks(network string, valid map[string]bool) error {
	var eps []store.Endpoint
	if err := c.store.View(func(tx *store.Tx) (err error) { eps, err = tx.Endpoints(); return err }); err != nil {
		return err
	}
	for _, ep := range eps {
		if !ep.InNetwork(network) {
			valid[store.AttachmentID(ep.ContainerID, ep.IfName)+"_ingress"] = true
		}
	}
	return nil
}

// collect is the agent's GC: it drops the pod pins whose veth is gone. It
// cannot go by the store's endpoints, as the interface plugin may not be
// braid's (ptp); and a pin whose interface still exists may belong to an
// ADD running right now.
func (p Plugin) collect(stdin []byte, r *plugin.Report) error {
	c, err := p.open(stdin, "COLLECT")
	if err != nil {
		return err
	}
	defer c.Close()
	pins, err := bpffs.LinkPins(c.common.BPFRoot, p.Name)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, pin := range pins {
		valid[pin] = !detached(bpffs.LinkPin(c.common.BPFRoot, p.Name, pin))
	}
	return c.gc(p.Name, valid, r)
}

// detached reports whether the tcx link pinned at pin lost its interface
// (the kernel then reports ifindex 0). A link it cannot read is kept.
func detached(pin string) bool {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil || info.TCX() == nil {
		return false
	}
	return info.TCX().Ifindex == 0
}

// gc detaches the pod pins not in valid (node-wide pins are kept), then
// reconciles the node.
func (c *call) gc(name string, valid map[string]bool, r *plugin.Report) error {
	pins, err := bpffs.LinkPins(c.common.BPFRoot, name)
	if err != nil {
		return err
	}
	for _, pin := range pins {
		if !valid[pin] && !strings.HasPrefix(pin, "dev-") {
			if err := tcx.Detach(bpffs.LinkPin(c.common.BPFRoot, name, pin)); err != nil {
				return err
			}
			c.log.Info("gc pin", "pin", pin)
			r.Changed("removed pin %s", pin)
		}
	}
	return c.dp.Reconcile(c.cluster, r)
}

// cmdStatus is ready when the node is initialized and its bpffs mounted
// (else 50, as veth-ebpf says) and its node-wide datapath can be made whole
// (else 51, limited connectivity). It reconciles rather than only checks: a
// runtime that waits for a ready network before its first ADD must not wait
// forever for that ADD.
func (p Plugin) cmdStatus(args *skel.CmdArgs) error {
	conf, err := p.Parse(args.StdinData)
	if err != nil {
		return err
	}
	if root := conf.Shared().BPFRoot; !bpffs.IsMounted(root) {
		return cnierr.NotAvailable("%s: bpffs is not mounted at %s (bpfRoot): run `braid node init`", p.Name, root)
	}
	c, err := p.open(args.StdinData, "STATUS")
	if err != nil {
		return err
	}
	defer c.Close()
	r := &plugin.Report{}
	if err := c.dp.Reconcile(c.cluster, r); err != nil {
		r.Problem("%v", err)
	}
	if len(r.Problems) > 0 {
		return types.NewError(types.ErrLimitedConnectivity, fmt.Sprintf("%s: %s", p.Name, strings.Join(r.Problems, "; ")), "")
	}
	return nil
}

// reconcile is `<plugin> reconcile`: the node-wide half of ADD, plus the pod
// programs of every endpoint in the store, so that after the node lost its
// pins and links (a reboot of the datapath) one sync brings everything back.
func (p Plugin) reconcile(stdin []byte, r *plugin.Report) error {
	c, err := p.open(stdin, "RECONCILE")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.dp.Reconcile(c.cluster, r); err != nil {
		return err
	}
	return c.restorePods(p.Name, r)
}

// restorePods attaches the pod program to each endpoint's host veth, where
// it is missing, and moves the others to this binary's program in place (an
// upgrade). Run after the interface plugin's own reconcile (braid sync
// follows conflist order), it keeps the tcx order of the chain.
func (c *call) restorePods(plugin string, r *plugin.Report) error {
	prog := c.dp.PodProgram()
	if prog == nil {
		return nil
	}
	var eps []store.Endpoint
	err := c.store.View(func(tx *store.Tx) (err error) { eps, err = tx.Endpoints(); return err })
	if err != nil {
		return err
	}
	for _, ep := range eps {
		host, err := netlinksafe.LinkByName(ep.HostIfName)
		if notfound.Is(err) {
			continue // the interface plugin reports it
		}
		if err != nil {
			return fmt.Errorf("endpoint %s: host veth %s: %w", ep.Key(), ep.HostIfName, err)
		}
		pin := c.podPin(plugin, ep.ContainerID, ep.IfName)
		missing := tcx.Verify(pin, host.Attrs().Index)
		if err := tcx.Attach(host.Attrs().Index, tcx.Ingress, prog, pin); err != nil {
			return err
		}
		if missing != nil {
			r.Changed("pod program restored on %s (%s)", ep.HostIfName, ep.IPv4)
		}
	}
	return nil
}

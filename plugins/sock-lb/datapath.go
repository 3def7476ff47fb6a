package main

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/braid-cni/braid/core/bpfobj"
	"github.com/braid-cni/braid/core/cgroup"
	"github.com/braid-cni/braid/core/chain"
	"github.com/braid-cni/braid/core/chained"
	"github.com/braid-cni/braid/core/maps"
	"github.com/braid-cni/braid/core/plugin"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// datapath is sock-lb's loaded programs and maps for one call.
type datapath struct {
	conf *NetConf
	objs sockLbObjects
	eps  *maps.Endpoints
}

func openDatapath(conf *NetConf) (*datapath, error) {
	d := &datapath{conf: conf}
	eps, err := bpfobj.Load(conf.BPFRoot, pluginName, loadSockLb, &d.objs)
	if err != nil {
		return nil, err
	}
	d.eps = eps
	return d, nil
}

func (d *datapath) Close() {
	d.objs.Close()
	d.eps.Close()
}

// Socket balancing needs nothing per pod.
func (d *datapath) PodProgram() *ebpf.Program                          { return nil }
func (d *datapath) AdjustPod(chained.Cluster, *chain.Attachment) error { return nil }
func (d *datapath) CheckPod(chained.Cluster, *chain.Attachment) error  { return nil }

// hooks are the socket programs and where they attach: the IPv4 hooks, and
// the IPv6 ones for dual-stack sockets reaching services at v4-mapped
// addresses.
func (d *datapath) hooks() []struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
} {
	return []struct {
		name   string
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{"connect4", ebpf.AttachCGroupInet4Connect, d.objs.SockConnect4},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, d.objs.SockSendmsg4},
		{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, d.objs.SockRecvmsg4},
		{"getpeername4", ebpf.AttachCgroupInet4GetPeername, d.objs.SockGetpeername4},
		{"connect6", ebpf.AttachCGroupInet6Connect, d.objs.SockConnect6},
		{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, d.objs.SockSendmsg6},
		{"recvmsg6", ebpf.AttachCGroupUDP6Recvmsg, d.objs.SockRecvmsg6},
		{"getpeername6", ebpf.AttachCgroupInet6GetPeername, d.objs.SockGetpeername6},
	}
}

func (d *datapath) hookPin(name string) string {
	return chained.NodePin(d.conf.BPFRoot, pluginName, "cgroup", name)
}

// Reconcile attaches the socket programs at cgroupRoot and makes the
// service and backend maps hold exactly the store's services.
func (d *datapath) Reconcile(c chained.Cluster, r *plugin.Report) error {
	cookie, err := netnsCookie()
	if err != nil {
		return err
	}
	conf := sockLbLbConf{HostNetnsCookie: cookie}
	if d.conf.HostNamespaceOnly {
		conf.HostNsOnly = 1
	}
	if err := d.objs.LbSettings.Put(uint32(0), conf); err != nil {
		return fmt.Errorf("lb settings: %w", err)
	}
	for _, h := range d.hooks() {
		missing := cgroup.Verify(d.conf.CgroupRoot, d.hookPin(h.name))
		if err := cgroup.Attach(d.conf.CgroupRoot, h.attach, h.prog, d.hookPin(h.name)); err != nil {
			return err
		}
		if missing != nil {
			r.Changed("cgroup hook %s attached at %s", h.name, d.conf.CgroupRoot)
		}
	}
	return d.syncServices(c, r)
}

// CheckNode verifies the attachments, that every service is in the maps
// with its backend count (and every node port), and the node IPs.
func (d *datapath) CheckNode(c chained.Cluster) error {
	for _, h := range d.hooks() {
		if err := cgroup.Verify(d.conf.CgroupRoot, d.hookPin(h.name)); err != nil {
			return fmt.Errorf("cgroup attachment %s at %s is missing: %w", h.name, d.conf.CgroupRoot, err)
		}
	}
	for _, s := range c.Services {
		var v sockLbLbService
		if err := d.objs.LbServices.Lookup(serviceKey(s), &v); err != nil {
			return fmt.Errorf("service %s (%s:%d/%s) is not in the service map", s.Name, s.VIP, s.Port, s.Protocol)
		}
		if want := serviceEntry(s); v != want {
			return fmt.Errorf("service %s is id %d with %d backends and affinity %ds in the map, id %d with %d and %ds in the store",
				s.Name, v.Id, v.Count, v.Affinity, s.ID, len(s.Backends), s.AffinityTimeout)
		}
		if nk, ok := nodePortKey(s); ok {
			var np sockLbLbService
			if err := d.objs.LbNodeports.Lookup(nk, &np); err != nil || np != v {
				return fmt.Errorf("service %s: node port %d/%s is not in the node port map as the service", s.Name, s.NodePort, s.Protocol)
			}
		}
		for slot, b := range s.Backends {
			var be sockLbLbBackend
			want := sockLbLbBackend{Ip: maps.IPv4Word(b.IP), Port: maps.Port16(b.Port)}
			if err := d.objs.LbBackends.Lookup(sockLbLbBackendKey{Id: s.ID, Slot: uint32(slot)}, &be); err != nil || be != want {
				return fmt.Errorf("service %s: backend slot %d is not %s in the backend map", s.Name, slot, b)
			}
		}
	}
	return d.checkNodeIPs(c)
}

// checkNodeIPs: lb_nodeips holds exactly this node's and its peers' IPs.
func (d *datapath) checkNodeIPs(c chained.Cluster) error {
	want := nodeIPs(c)
	var ip, v uint32
	n := 0
	it := d.objs.LbNodeips.Iterate()
	for it.Next(&ip, &v) {
		if _, ok := want[ip]; !ok {
			return fmt.Errorf("node IP map holds %s, which is not a node of the cluster", maps.WordIPv4(ip))
		}
		n++
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("node IP map: %w", err)
	}
	if n != len(want) {
		return fmt.Errorf("node IP map holds %d node IPs, the cluster has %d", n, len(want))
	}
	return nil
}

func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if errors.Is(err, syscall.ENOPROTOOPT) {
		return 0, errors.New("kernel lacks SO_NETNS_COOKIE (5.14+), needed by hostNamespaceOnly")
	}
	return cookie, err
}

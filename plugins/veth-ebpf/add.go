package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/braid-cni/braid/core/cnierr"
	coreipam "github.com/braid-cni/braid/core/ipam"
	"github.com/braid-cni/braid/core/store"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

func cmdAdd(args *skel.CmdArgs) error {
	s, err := openSession(args.StdinData, "ADD")
	if err != nil {
		return err
	}
	defer s.Close()

	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("cannot open netns %q: %v", args.Netns, err), "")
	}
	defer netns.Close()

	var result *current.Result
	err = s.store.Update(func(tx *store.Tx) error {
		result, err = s.add(tx, args, netns)
		return err
	})
	if err != nil {
		s.log.Error("add failed", "container", args.ContainerID, "err", err)
		return cnierr.Wrap(err, "veth-ebpf ADD")
	}
	s.log.Info("added", "container", args.ContainerID, "ip", result.IPs[0].Address.String())
	return types.PrintResult(result, s.conf.CNIVersion)
}

// add does the work of ADD inside a store transaction. Whatever it made in
// the kernel is undone if a later step fails; the transaction itself rolls
// back the store.
func (s *session) add(tx *store.Tx, args *skel.CmdArgs, netns ns.NetNS) (_ *current.Result, err error) {
	node, err := tx.Node()
	if errors.Is(err, store.ErrNotInitialized) {
		return nil, cnierr.NotAvailable("%v", err)
	}
	if err != nil {
		return nil, err
	}
	mtu := s.conf.MTU
	if mtu == 0 {
		if mtu, err = nodeMTU(node.Device); err != nil {
			return nil, cnierr.NotAvailable("%v", err)
		}
	}

	podNS, podName, err := podArgs(args.Args)
	if err != nil {
		return nil, err
	}
	key := store.EndpointKey(args.ContainerID, args.IfName)
	ep, err := tx.Endpoint(key) // a repeated ADD keeps its id and address
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	ep.PodNamespace, ep.PodName = podNS, podName
	ep.ContainerID, ep.IfName, ep.Netns, ep.MTU = args.ContainerID, args.IfName, args.Netns, mtu
	ep.Network = s.conf.Name
	if ep.Secondary, err = hasPrimary(tx, key, args.Netns); err != nil {
		return nil, err
	}
	ep.HostIfName = hostVethName(args.ContainerID, args.IfName)
	ep.Created = time.Now().UTC()

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	if ep.IPv4, err = s.allocate(tx, node.PodCIDR, key, args.StdinData); err != nil {
		return nil, err
	}
	if s.conf.IPAM.Type != "" {
		ep.IPAMPlugin = s.conf.IPAM.Type
		undo = append(undo, func() { _ = ipam.ExecDel(s.conf.IPAM.Type, args.StdinData) })
	}

	// Loaded before anything is made: a failure leaves nothing to undo.
	if _, err := s.dp.programs(); err != nil {
		return nil, err
	}
	pl, err := createVeth(netns, args.IfName, ep.HostIfName, mtu)
	if err != nil {
		return nil, fmt.Errorf("create veth %s: %w", ep.HostIfName, err)
	}
	undo = append(undo, func() { _ = deleteHostVeth(ep.HostIfName) })
	hostMAC := pl.host.Attrs().HardwareAddr
	ep.HostIfIndex, ep.HostMAC, ep.PodMAC = pl.host.Attrs().Index, hostMAC.String(), pl.podMAC.String()
	if err := tx.PutEndpoint(&ep); err != nil { // gives the endpoint its id
		return nil, err
	}
	ref := newEndpointRef(ep.HostIfName, ep.HostIfIndex, ep.ID, ep.IPv4, pl.podMAC, hostMAC)
	undo = append(undo, func() { _ = s.dp.detach(ep.HostIfName, ep.IPv4) })

	// from_container goes on before the pod's interface comes up, so no
	// packet of the pod is ever unchecked; to_container once the pod and
	// the node are configured. (Each tcx attach waits for an RCU grace
	// period, synchronize_rcu in the kernel's tcx code, 7-10 ms here: most
	// of ADD's time, and nothing braid can shorten.)
	if err := s.dp.attachFromPod(ref); err != nil {
		return nil, err
	}
	if err := configurePod(netns, args.IfName, ep.IPv4, hostMAC, ep.Secondary); err != nil {
		return nil, fmt.Errorf("configure pod interface: %w", err)
	}
	if err := configureHost(pl.host, ep.IPv4, pl.podMAC); err != nil {
		return nil, err
	}
	// The alias names the attachment in kernel state: a lost store can be
	// rebuilt from it (braid node rebuild).
	if err := netlink.LinkSetAlias(pl.host, endpointAlias(args.ContainerID, args.IfName)); err != nil {
		return nil, fmt.Errorf("alias %s: %w", ep.HostIfName, err)
	}
	if err := s.dp.attachToPod(ref); err != nil {
		return nil, err
	}
	return addResult(ep, netns.Path(), s.conf.DNS), nil
}

// allocate takes the pod's address from the delegated IPAM plugin when the
// config names one, otherwise from the node's pod CIDR.
func (s *session) allocate(tx *store.Tx, podCIDR netip.Prefix, key string, stdin []byte) (netip.Addr, error) {
	if s.conf.IPAM.Type == "" {
		return coreipam.Allocate(tx, podCIDR, key)
	}
	r, err := ipam.ExecAdd(s.conf.IPAM.Type, stdin)
	if err != nil {
		return netip.Addr{}, cnierr.Wrap(err, "ipam plugin %s", s.conf.IPAM.Type)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ipc := range res.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP.To4()); ok && ipc.Address.IP.To4() != nil {
			return a, nil
		}
	}
	_ = ipam.ExecDel(s.conf.IPAM.Type, stdin)
	return netip.Addr{}, cnierr.Invalid("ipam", "plugin %s returned no IPv4 address", s.conf.IPAM.Type)
}

// hasPrimary reports whether another braid attachment (not key) already
// gives the pod in netns its default route: the first attachment of a pod
// owns it, every later one is secondary.
func hasPrimary(tx *store.Tx, key, netns string) (bool, error) {
	eps, err := tx.Endpoints()
	if err != nil {
		return false, err
	}
	for _, other := range eps {
		if other.Key() != key && other.Netns == netns && !other.Secondary {
			return true, nil
		}
	}
	return false, nil
}

func addResult(ep store.Endpoint, sandbox string, dns types.DNS) *current.Result {
	gw := net.IP(gatewayIP.AsSlice())
	if ep.Secondary {
		return secondaryResult(ep, sandbox, dns)
	}
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: ep.HostIfName, Mac: ep.HostMAC, Mtu: ep.MTU},
			{Name: ep.IfName, Mac: ep.PodMAC, Mtu: ep.MTU, Sandbox: sandbox},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   *hostPrefix(ep.IPv4),
			Gateway:   gw,
		}},
		Routes: []*types.Route{
			{Dst: *hostPrefix(gatewayIP), Scope: ptr(int(0xfd))}, // RT_SCOPE_LINK
			{Dst: *defaultRoute(), GW: gw},
		},
		DNS: dns,
	}
}

// secondaryResult is a secondary attachment's result: its address with no
// gateway (a runtime must not make it the default) and its own gateway route.
func secondaryResult(ep store.Endpoint, sandbox string, dns types.DNS) *current.Result {
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: ep.HostIfName, Mac: ep.HostMAC, Mtu: ep.MTU},
			{Name: ep.IfName, Mac: ep.PodMAC, Mtu: ep.MTU, Sandbox: sandbox},
		},
		IPs:    []*current.IPConfig{{Interface: current.Int(1), Address: *hostPrefix(ep.IPv4)}},
		Routes: []*types.Route{{Dst: *hostPrefix(gatewayIP), Scope: ptr(int(0xfd)), Priority: secondaryMetric}},
		DNS:    dns,
	}
}

func ptr[T any](v T) *T { return &v }

// k8sArgs are the CNI_ARGS braid reads: the pod a Kubernetes runtime
// attaches. Any other argument is ignored (IgnoreUnknown set before
// parsing), as CNI asks of a plugin that does not know it.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString
	K8S_POD_NAME      types.UnmarshallableString
}

// maxPodName bounds what the store keeps of a pod's name (Kubernetes
// allows 253 characters, namespaces 63).
const maxPodName = 253

// podArgs reads the pod's namespace and name from CNI_ARGS (both empty
// when the runtime gives none).
func podArgs(raw string) (namespace, name string, err error) {
	a := k8sArgs{CommonArgs: types.CommonArgs{IgnoreUnknown: true}}
	if err := types.LoadArgs(raw, &a); err != nil {
		return "", "", types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %v", err), "")
	}
	namespace, name = string(a.K8S_POD_NAMESPACE), string(a.K8S_POD_NAME)
	if len(namespace) > maxPodName || len(name) > maxPodName {
		return "", "", types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_ARGS: K8S_POD_NAMESPACE or K8S_POD_NAME longer than %d characters", maxPodName), "")
	}
	return namespace, name, nil
}

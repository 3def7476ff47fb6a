package k8sstore

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Local is this node as the translation of a Service needs it: which
// endpoints are its own (for the Local traffic policies) and its address
// (for a node port that needs an entry of its own).
type Local struct {
	Name    string
	PodCIDR netip.Prefix
	NodeIP  netip.Addr
}

// owns: the endpoint runs on this node (its slice says so, or its address
// is in this node's pod CIDR).
func (l Local) owns(ep discoveryv1.Endpoint, addr netip.Addr) bool {
	return (ep.NodeName != nil && l.Name != "" && *ep.NodeName == l.Name) ||
		(l.PodCIDR.IsValid() && l.PodCIDR.Contains(addr))
}

// ServiceEntries translates one Kubernetes Service, with the
// EndpointSlices labelled with its name, into the braid services this node
// enforces for it, with kube-proxy's semantics (docs/architecture.md has
// the table). problems name what of it braid cannot serve; the rest is
// served all the same. Headless and ExternalName Services, and what is
// IPv6 only, give nothing and no problem.
func ServiceEntries(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, self Local) (out []store.Service, problems []string) {
	id := svc.Namespace + "/" + svc.Name
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil, nil
	}
	vip, ok, err := clusterIPv4(svc)
	if err != nil {
		return nil, []string{fmt.Sprintf("service %s: %v", id, err)}
	}
	if !ok {
		return nil, nil
	}
	extra, bad := externalVIPs(svc)
	for _, b := range bad {
		problems = append(problems, fmt.Sprintf("service %s: %s", id, b))
	}
	var affinity uint32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = uint32(corev1.DefaultClientIPServiceAffinitySeconds)
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = uint32(*c.ClientIP.TimeoutSeconds)
		}
	}
	etpLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	itpLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	for _, p := range svc.Spec.Ports {
		proto, err := protocol(p.Protocol)
		if err != nil {
			problems = append(problems, fmt.Sprintf("service %s port %s: %v", id, portLabel(p), err))
			continue
		}
		all, local := backends(p, eps, self)
		base := store.Service{
			Name: EntryName(svc.Namespace, svc.Name, p), VIP: vip, Port: uint16(p.Port), Protocol: proto,
			Backends: all, Type: store.ClusterIP, AffinityTimeout: affinity,
		}
		cip := base
		if itpLocal {
			cip.Backends = local
		}
		if p.NodePort != 0 {
			np := base
			np.Type, np.NodePort = store.NodePort, uint16(p.NodePort)
			if etpLocal {
				np.ExternalTrafficPolicy = "Local"
			}
			switch {
			case !itpLocal:
				cip = np // one entry: the ClusterIP and the node port share its backends
			case self.NodeIP.Is4():
				// The ClusterIP keeps this node's backends, the node port
				// all: the node port needs an entry (and an address) of
				// its own, this node's IP.
				np.Name, np.VIP, np.Port = np.Name+".nodeport", self.NodeIP, uint16(p.NodePort)
				out = append(out, np)
			default:
				problems = append(problems, fmt.Sprintf("service %s port %s: internalTrafficPolicy Local with a node port needs this node's IP", id, portLabel(p)))
			}
		}
		out = append(out, cip)
		for _, ip := range extra {
			e := base
			e.Name, e.VIP, e.External = base.Name+"@"+ip.String(), ip, true
			if etpLocal {
				e.ExternalTrafficPolicy = "Local"
			}
			out = append(out, e)
		}
	}
	return out, problems
}

// EntryName is the braid name of a Service port's entry:
// <namespace>.<name>.<port name, or number when unnamed>. Namespaces and
// Service names are DNS labels and port names IANA service names (letters,
// digits, '-', at least one letter), so names never collide. An external
// VIP's entry adds "@<IP>", a node port with its own entry ".nodeport".
func EntryName(namespace, name string, p corev1.ServicePort) string {
	return namespace + "." + name + "." + portLabel(p)
}

func portLabel(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

// clusterIPv4 is the Service's IPv4 ClusterIP; ok is false when it has
// none (IPv6 only, or not allocated yet).
func clusterIPv4(svc *corev1.Service) (netip.Addr, bool, error) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("clusterIP %q is not an IP address", s)
		}
		if ip.Is4() {
			return ip, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// externalVIPs are the Service's IPv4 externalIPs and LoadBalancer ingress
// IPs, sorted, each once. An ingress with ipMode Proxy is left out as
// kube-proxy does: its load balancer sends traffic to node ports, not to
// the IP.
func externalVIPs(svc *corev1.Service) (ips []netip.Addr, bad []string) {
	add := func(what, s string) {
		ip, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s %q is not an IP address", what, s))
		case ip.Is4() && !slices.Contains(ips, ip):
			ips = append(ips, ip)
		}
	}
	for _, s := range svc.Spec.ExternalIPs {
		add("externalIP", s)
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" && (in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeProxy) {
				add("load balancer ingress IP", in.IP)
			}
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips, bad
}

func protocol(p corev1.Protocol) (string, error) {
	switch p {
	case corev1.ProtocolTCP, "":
		return store.TCP, nil
	case corev1.ProtocolUDP:
		return store.UDP, nil
	case corev1.ProtocolSCTP:
		return "", fmt.Errorf("SCTP is not supported")
	}
	return "", fmt.Errorf("protocol %q is not supported", p)
}

// endpoint is one backend of a Service port with its conditions.
type endpoint struct {
	store.Backend
	ready, serving, terminating, local bool
}

// backends are the backends of Service port p in the slices, as kube-proxy
// picks them: the ready ones, or, when none is ready, those serving while
// terminating; local the same among this node's endpoints. The target
// port comes from the slice's port of the same name and protocol (so a
// named targetPort is resolved per endpoint). An endpoint in several slices
// counts once, ready if any says so. Both lists are sorted.
func backends(p corev1.ServicePort, eps []*discoveryv1.EndpointSlice, self Local) (all, local []store.Backend) {
	seen := map[store.Backend]int{}
	var list []endpoint
	for _, sl := range eps {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port, ok := slicePort(sl, p)
		if !ok {
			continue
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			// Addresses are fungible: kube-proxy uses the first.
			ip, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || !ip.Is4() {
				continue
			}
			e := endpoint{
				Backend:     store.Backend{IP: ip, Port: port},
				ready:       isTrue(ep.Conditions.Ready, true),
				serving:     isTrue(ep.Conditions.Serving, true),
				terminating: isTrue(ep.Conditions.Terminating, false),
				local:       self.owns(ep, ip),
			}
			if i, dup := seen[e.Backend]; dup {
				if e.ready && !list[i].ready {
					list[i] = e
				}
				continue
			}
			seen[e.Backend] = len(list)
			list = append(list, e)
		}
	}
	all = pick(list, func(endpoint) bool { return true })
	local = pick(list, func(e endpoint) bool { return e.local })
	return all, local
}

// pick is kube-proxy's choice among the endpoints in: the ready ones, else
// the serving and terminating ones.
func pick(list []endpoint, in func(endpoint) bool) []store.Backend {
	var ready, fallback []store.Backend
	for _, e := range list {
		switch {
		case !in(e):
		case e.ready:
			ready = append(ready, e.Backend)
		case e.serving && e.terminating:
			fallback = append(fallback, e.Backend)
		}
	}
	out := ready
	if len(out) == 0 {
		out = fallback
	}
	slices.SortFunc(out, func(a, b store.Backend) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	if out == nil {
		out = []store.Backend{}
	}
	return out
}

// slicePort is the port of sl serving Service port p: same name, same
// protocol.
func slicePort(sl *discoveryv1.EndpointSlice, p corev1.ServicePort) (uint16, bool) {
	for _, sp := range sl.Ports {
		name, proto := "", corev1.ProtocolTCP
		if sp.Name != nil {
			name = *sp.Name
		}
		if sp.Protocol != nil {
			proto = *sp.Protocol
		}
		want := p.Protocol
		if want == "" {
			want = corev1.ProtocolTCP
		}
		if name == p.Name && proto == want && sp.Port != nil && *sp.Port > 0 && *sp.Port <= 65535 {
			return uint16(*sp.Port), true
		}
	}
	return 0, false
}

// isTrue reads an optional condition; nil is what the API says to assume.
func isTrue(b *bool, unset bool) bool {
	if b == nil {
		return unset
	}
	return *b
}

package k8sstore

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Builders: a Service "web" in namespace "ns", and its slices.

func svc(mods ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func ports(ps ...corev1.ServicePort) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports = ps }
}

func ptr[T any](v T) *T { return &v }

// ep is an endpoint: address, conditions "r" ready, "s" serving, "t"
// terminating (nil conditions unless given), node.
func ep(addr, conds, node string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{addr}}
	if conds != "-" {
		e.Conditions = discoveryv1.EndpointConditions{
			Ready:       ptr(strings.Contains(conds, "r")),
			Serving:     ptr(strings.Contains(conds, "s")),
			Terminating: ptr(strings.Contains(conds, "t")),
		}
	}
	if node != "" {
		e.NodeName = ptr(node)
	}
	return e
}

// slice of Service ns/web: its ports ("name" → port, TCP) and endpoints.
func slice(name string, sp map[string]int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	for n, p := range sp {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(p)})
	}
	return s
}

func be(s string) store.Backend {
	ap := netip.MustParseAddrPort(s)
	return store.Backend{IP: ap.Addr(), Port: ap.Port()}
}

func bes(ss ...string) []store.Backend {
	out := []store.Backend{}
	for _, s := range ss {
		out = append(out, be(s))
	}
	return out
}

// entry is the braid service the Service ns/web's port gives by default.
func entry(name, vip string, port uint16, backends []store.Backend, mods ...func(*store.Service)) store.Service {
	e := store.Service{Name: name, VIP: netip.MustParseAddr(vip), Port: port, Protocol: store.TCP,
		Backends: backends, Type: store.ClusterIP}
	for _, m := range mods {
		m(&e)
	}
	return e
}

var self = Local{Name: "node-a", PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), NodeIP: netip.MustParseAddr("192.0.2.1")}

func TestServiceEntries(t *testing.T) {
	unnamed := map[string]int32{"": 8080}
	tests := []struct {
		name     string
		svc      *corev1.Service
		slices   []*discoveryv1.EndpointSlice
		want     []store.Service
		problems []string
	}{{
		name: "ClusterIP: ready endpoints only; a not-ready one is left out",
		svc:  svc(),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed,
			ep("10.244.2.5", "rs", "node-b"), ep("10.244.1.7", "rs", "node-a"), ep("10.244.3.9", "", "node-c"))},
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.1.7:8080", "10.244.2.5:8080"))},
	}, {
		name:   "conditions not given count as ready",
		svc:    svc(),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.2.5", "-", ""))},
		want:   []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.5:8080"))},
	}, {
		name: "no slice: the VIP is there with no backend (connections refused)",
		svc:  svc(),
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes())},
	}, {
		name: "every port, named; UDP",
		svc: svc(ports(
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})),
		slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
			s := slice("a", map[string]int32{"http": 8080}, ep("10.244.2.5", "rs", ""))
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr("dns"), Protocol: ptr(corev1.ProtocolUDP), Port: ptr(int32(5353))})
			return s
		}()},
		want: []store.Service{
			entry("ns.web.http", "10.96.0.10", 80, bes("10.244.2.5:8080")),
			entry("ns.web.dns", "10.96.0.10", 53, bes("10.244.2.5:5353"), func(s *store.Service) { s.Protocol = store.UDP }),
		},
	}, {
		name: "a named targetPort resolved per endpoint: each slice says its pods' port",
		svc:  svc(ports(corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("web")})),
		slices: []*discoveryv1.EndpointSlice{
			slice("a", map[string]int32{"http": 8080}, ep("10.244.2.5", "rs", "")),
			slice("b", map[string]int32{"http": 9090}, ep("10.244.3.6", "rs", "")),
		},
		want: []store.Service{entry("ns.web.http", "10.96.0.10", 80, bes("10.244.2.5:8080", "10.244.3.6:9090"))},
	}, {
		name: "a slice port of the same name but another protocol serves nothing",
		svc:  svc(ports(corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolTCP})),
		slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
			s := slice("a", nil, ep("10.244.2.5", "rs", ""))
			s.Ports = []discoveryv1.EndpointPort{{Name: ptr("dns"), Protocol: ptr(corev1.ProtocolUDP), Port: ptr(int32(53))}}
			return s
		}()},
		want: []store.Service{entry("ns.web.dns", "10.96.0.10", 53, bes())},
	}, {
		name: "several slices merged; an endpoint in two counts once, ready if one says so",
		svc:  svc(),
		slices: []*discoveryv1.EndpointSlice{
			slice("a", unnamed, ep("10.244.2.5", "", ""), ep("10.244.2.6", "rs", "")),
			slice("b", unnamed, ep("10.244.2.5", "rs", ""), ep("10.244.2.6", "rs", ""), ep("10.244.2.7", "rs", "")),
		},
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.5:8080", "10.244.2.6:8080", "10.244.2.7:8080"))},
	}, {
		name: "IPv6 and FQDN slices are ignored",
		svc:  svc(),
		slices: []*discoveryv1.EndpointSlice{
			func() *discoveryv1.EndpointSlice {
				s := slice("v6", unnamed, ep("fd00::5", "rs", ""))
				s.AddressType = discoveryv1.AddressTypeIPv6
				return s
			}(),
			func() *discoveryv1.EndpointSlice {
				s := slice("fqdn", unnamed, ep("example.com", "rs", ""))
				s.AddressType = discoveryv1.AddressTypeFQDN
				return s
			}(),
			slice("v4", unnamed, ep("10.244.2.5", "rs", "")),
		},
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.5:8080"))},
	}, {
		name: "terminating fallback: with no ready endpoint, the serving terminating ones",
		svc:  svc(),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed,
			ep("10.244.2.5", "st", ""), ep("10.244.2.6", "t", ""), ep("10.244.2.7", "s", ""))},
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.5:8080"))},
	}, {
		name: "terminating fallback: not while one endpoint is ready",
		svc:  svc(),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed,
			ep("10.244.2.5", "st", ""), ep("10.244.2.8", "rs", ""))},
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.8:8080"))},
	}, {
		name: "dual-stack: the IPv4 one of clusterIPs",
		svc: svc(func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00::10", []string{"fd00::10", "10.96.0.11"}
		}),
		want: []store.Service{entry("ns.web.80", "10.96.0.11", 80, bes())},
	}, {
		name: "IPv6 only: nothing, silently",
		svc:  svc(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00::10", []string{"fd00::10"} }),
	}, {
		name: "headless: nothing, silently",
		svc:  svc(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
	}, {
		name: "ExternalName: nothing, silently",
		svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "", nil, "example.com"
		}),
	}, {
		name: "NodePort: the node port on the ClusterIP's entry",
		svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeNodePort, 30080
		}),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.2.5", "rs", ""))},
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.5:8080"),
			func(s *store.Service) { s.Type, s.NodePort = store.NodePort, 30080 })},
	}, {
		name: "LoadBalancer: ingress IPs and externalIPs are external VIPs, each once, sorted; ipMode Proxy and hostnames are not",
		svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeLoadBalancer, 30080
			s.Spec.ExternalIPs = []string{"203.0.113.9", "2001:db8::1"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
				{IP: "203.0.113.5"}, {IP: "203.0.113.9"}, {Hostname: "lb.example.com"},
				{IP: "203.0.113.7", IPMode: ptr(corev1.LoadBalancerIPModeProxy)},
				{IP: "203.0.113.6", IPMode: ptr(corev1.LoadBalancerIPModeVIP)},
			}
		}),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.2.5", "rs", ""))},
		want: []store.Service{
			entry("ns.web.80", "10.96.0.10", 80, bes("10.244.2.5:8080"), func(s *store.Service) { s.Type, s.NodePort = store.NodePort, 30080 }),
			entry("ns.web.80@203.0.113.5", "203.0.113.5", 80, bes("10.244.2.5:8080"), func(s *store.Service) { s.External = true }),
			entry("ns.web.80@203.0.113.6", "203.0.113.6", 80, bes("10.244.2.5:8080"), func(s *store.Service) { s.External = true }),
			entry("ns.web.80@203.0.113.9", "203.0.113.9", 80, bes("10.244.2.5:8080"), func(s *store.Service) { s.External = true }),
		},
	}, {
		name: "LoadBalancer without node ports: a plain ClusterIP entry and the ingress VIP",
		svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.AllocateLoadBalancerNodePorts = corev1.ServiceTypeLoadBalancer, ptr(false)
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.5"}}
		}),
		want: []store.Service{
			entry("ns.web.80", "10.96.0.10", 80, bes()),
			entry("ns.web.80@203.0.113.5", "203.0.113.5", 80, bes(), func(s *store.Service) { s.External = true }),
		},
	}, {
		name: "ingress IPs of a Service that is no longer a LoadBalancer are not served",
		svc: svc(func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.5"}}
		}),
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes())},
	}, {
		name: "externalIPs on a ClusterIP Service",
		svc:  svc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.9"} }),
		want: []store.Service{
			entry("ns.web.80", "10.96.0.10", 80, bes()),
			entry("ns.web.80@203.0.113.9", "203.0.113.9", 80, bes(), func(s *store.Service) { s.External = true }),
		},
	}, {
		name:     "an unreadable externalIP is a problem, the rest is served",
		svc:      svc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"not-an-ip"} }),
		want:     []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes())},
		problems: []string{`service ns/web: externalIP "not-an-ip" is not an IP address`},
	}, {
		// dsr keeps this node's backends of a Local node port itself (by
		// pod CIDR): the entry keeps them all, which sockets on this node
		// use for the ClusterIP (kube-proxy sends in-cluster traffic to
		// every endpoint whatever the policy).
		name: "externalTrafficPolicy Local: said on the node port's and the external VIPs' entries, backends all",
		svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeLoadBalancer, 30080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.5"}}
		}),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.1.5", "rs", "node-a"), ep("10.244.2.5", "rs", "node-b"))},
		want: []store.Service{
			entry("ns.web.80", "10.96.0.10", 80, bes("10.244.1.5:8080", "10.244.2.5:8080"), func(s *store.Service) {
				s.Type, s.NodePort, s.ExternalTrafficPolicy = store.NodePort, 30080, "Local"
			}),
			entry("ns.web.80@203.0.113.5", "203.0.113.5", 80, bes("10.244.1.5:8080", "10.244.2.5:8080"), func(s *store.Service) {
				s.External, s.ExternalTrafficPolicy = true, "Local"
			}),
		},
	}, {
		name: "internalTrafficPolicy Local: the ClusterIP's backends are this node's (by node name, or by pod CIDR)",
		svc: svc(func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
			s.Spec.ExternalIPs = []string{"203.0.113.9"}
		}),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed,
			ep("10.244.1.5", "rs", "node-a"), ep("10.244.1.6", "rs", ""), ep("192.0.2.1", "rs", "node-a"), ep("10.244.2.5", "rs", "node-b"))},
		want: []store.Service{
			entry("ns.web.80", "10.96.0.10", 80, bes("10.244.1.5:8080", "10.244.1.6:8080", "192.0.2.1:8080")),
			// externalIPs follow the external policy (Cluster): every endpoint
			entry("ns.web.80@203.0.113.9", "203.0.113.9", 80, bes("10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080", "192.0.2.1:8080"),
				func(s *store.Service) { s.External = true }),
		},
	}, {
		name:   "internalTrafficPolicy Local: no endpoint here, no backend (as kube-proxy drops)",
		svc:    svc(func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal) }),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.2.5", "rs", "node-b"))},
		want:   []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes())},
	}, {
		name:   "internalTrafficPolicy Local: the terminating fallback among this node's endpoints",
		svc:    svc(func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal) }),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.2.5", "rs", "node-b"), ep("10.244.1.5", "st", "node-a"))},
		want:   []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes("10.244.1.5:8080"))},
	}, {
		name: "internalTrafficPolicy Local with a node port: the node port gets its own entry on this node's IP, with every backend",
		svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeNodePort, 30080
			s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
		}),
		slices: []*discoveryv1.EndpointSlice{slice("a", unnamed, ep("10.244.1.5", "rs", "node-a"), ep("10.244.2.5", "rs", "node-b"))},
		want: []store.Service{
			entry("ns.web.80.nodeport", "192.0.2.1", 30080, bes("10.244.1.5:8080", "10.244.2.5:8080"),
				func(s *store.Service) { s.Type, s.NodePort = store.NodePort, 30080 }),
			entry("ns.web.80", "10.96.0.10", 80, bes("10.244.1.5:8080")),
		},
	}, {
		name: "sessionAffinity ClientIP: Kubernetes' default timeout",
		svc:  svc(func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }),
		want: []store.Service{entry("ns.web.80", "10.96.0.10", 80, bes(), func(s *store.Service) { s.AffinityTimeout = 10800 })},
	}, {
		name: "sessionAffinity ClientIP: its timeoutSeconds, on every VIP",
		svc: svc(func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
			s.Spec.ExternalIPs = []string{"203.0.113.9"}
		}),
		want: []store.Service{
			entry("ns.web.80", "10.96.0.10", 80, bes(), func(s *store.Service) { s.AffinityTimeout = 60 }),
			entry("ns.web.80@203.0.113.9", "203.0.113.9", 80, bes(), func(s *store.Service) { s.AffinityTimeout, s.External = 60, true }),
		},
	}, {
		name: "SCTP: a problem naming the Service; its other ports are served",
		svc: svc(ports(
			corev1.ServicePort{Name: "sig", Port: 3868, Protocol: corev1.ProtocolSCTP},
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP})),
		want:     []store.Service{entry("ns.web.http", "10.96.0.10", 80, bes())},
		problems: []string{"service ns/web port sig: SCTP is not supported"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := ServiceEntries(tt.svc, tt.slices, self)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries:\n got  %+v\n want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(problems, tt.problems) {
				t.Errorf("problems: got %q, want %q", problems, tt.problems)
			}
			// What it makes, the node store takes (names included).
			if _, skipped := store.Admit(got); len(skipped) > 0 {
				t.Errorf("the store refuses: %q", skipped)
			}
		})
	}
}

// Names are unique and deterministic across Services, ports and VIPs.
func TestEntryNamesUnique(t *testing.T) {
	a := svc(ports(corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "https", Port: 443}),
		func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.9"} })
	b := svc(func(s *corev1.Service) {
		s.Name, s.Spec.ClusterIP, s.Spec.ClusterIPs = "web2", "10.96.0.11", []string{"10.96.0.11"}
	})
	seen := map[string]bool{}
	for _, s := range []*corev1.Service{a, b} {
		got, _ := ServiceEntries(s, nil, self)
		again, _ := ServiceEntries(s, nil, self)
		if !reflect.DeepEqual(got, again) {
			t.Errorf("two translations of %s differ", s.Name)
		}
		for _, e := range got {
			if seen[e.Name] {
				t.Errorf("name %s twice", e.Name)
			}
			seen[e.Name] = true
		}
	}
	if len(seen) != 5 {
		t.Errorf("names %v, want 5", seen)
	}
}

// More backends than a service may have: the node store leaves that entry
// out and says so; the Service's other entries, and other Services, stay.
func TestTooManyBackendsIsAProblem(t *testing.T) {
	var eps []discoveryv1.Endpoint
	for i := range store.MaxBackends + 1 {
		eps = append(eps, ep(netip.AddrFrom4([4]byte{10, 244, byte(2 + i/250), byte(1 + i%250)}).String(), "rs", ""))
	}
	big := svc(ports(corev1.ServicePort{Name: "a", Port: 80}, corev1.ServicePort{Name: "b", Port: 81}))
	sl := slice("a", map[string]int32{"a": 8080}, eps...)
	got, problems := ServiceEntries(big, []*discoveryv1.EndpointSlice{sl}, self)
	if len(problems) > 0 || len(got) != 2 {
		t.Fatalf("entries %d, problems %q", len(got), problems)
	}
	ok, skipped := store.Admit(got)
	if len(ok) != 1 || ok[0].Name != "ns.web.b" {
		t.Errorf("admitted %v, want ns.web.b alone", ok)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "service ns.web.a: 257 backends, at most 256") {
		t.Errorf("skipped %q", skipped)
	}
}

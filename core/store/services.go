package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Protocols a service may use.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Service types.
const (
	ClusterIP = "ClusterIP"
	NodePort  = "NodePort"
)

// What the datapath's maps hold; the store refuses more (tested against the
// maps' sizes in plugins/sock-lb and plugins/dsr).
const (
	// MaxBackends bounds one service's backends (the LB maps are sized for it).
	MaxBackends = 256
	// MaxServices is sock-lb's service map (lb_services): every service.
	MaxServices = 1 << 16
	// MaxTotalBackends is sock-lb's backend map (lb_backends): the
	// backends of all services together.
	MaxTotalBackends = 1 << 20
	// MaxNodePorts is dsr's node-port map (dsr_nodeports), one entry and
	// one Maglev table per NodePort service.
	MaxNodePorts = 4096
)

// Backend is one address:port a service balances to.
type Backend struct {
	IP   netip.Addr `json:"ip"`
	Port uint16     `json:"port"`
}

func (b Backend) String() string { return netip.AddrPortFrom(b.IP, b.Port).String() }

// Service is a virtual address balanced over backends. Its identity is
// (VIP, Port, Protocol); Name is how people refer to it.
type Service struct {
	ID       uint32     `json:"id"`
	Name     string     `json:"name"`
	VIP      netip.Addr `json:"vip"`
	Port     uint16     `json:"port"`
	Protocol string     `json:"protocol"`
	Backends []Backend  `json:"backends"`
	Type     string     `json:"type,omitempty"`
	// NodePort applies to NodePort services, ExternalTrafficPolicy to
	// NodePort and External ones: Local keeps traffic that arrives at the
	// node device (from outside) on this node's backends; Backends stay
	// the whole list, which sockets on the node use.
	NodePort              uint16 `json:"nodePort,omitempty"`
	ExternalTrafficPolicy string `json:"externalTrafficPolicy,omitempty"`
	// External: clients outside the cluster reach VIP:Port at any node
	// (Kubernetes externalIPs and LoadBalancer ingress IPs), not only
	// sockets on the node.
	External bool `json:"external,omitempty"`
	// AffinityTimeout, when not zero, keeps a client IP on the backend it
	// got for that many seconds since its last connection (Kubernetes
	// sessionAffinity: ClientIP).
	AffinityTimeout uint32 `json:"affinityTimeout,omitempty"`
}

var (
	bucketServices = []byte("services")
	keyNextSvcID   = []byte("next-service-id")
)

func init() { allBuckets = append(allBuckets, bucketServices) }

// Validate checks what a service must satisfy on its own, and makes the
// protocol lower case and an empty type ClusterIP.
func (s *Service) Validate() error {
	if s.Name == "" || strings.ContainsAny(s.Name, " /") {
		return fmt.Errorf("service name %q must be non-empty, without spaces or slashes", s.Name)
	}
	if !s.VIP.Is4() {
		return fmt.Errorf("service %s: VIP %s is not an IPv4 address", s.Name, s.VIP)
	}
	if s.Port == 0 {
		return fmt.Errorf("service %s: port must be 1..65535", s.Name)
	}
	s.Protocol = strings.ToLower(s.Protocol)
	if s.Protocol != TCP && s.Protocol != UDP {
		return fmt.Errorf("service %s: protocol %q must be tcp or udp", s.Name, s.Protocol)
	}
	if len(s.Backends) > MaxBackends {
		return fmt.Errorf("service %s: %d backends, at most %d fit in the LB maps", s.Name, len(s.Backends), MaxBackends)
	}
	seen := map[Backend]bool{}
	for _, b := range s.Backends {
		if !b.IP.Is4() || b.Port == 0 {
			return fmt.Errorf("service %s: backend %s must be an IPv4 address and a port 1..65535", s.Name, b)
		}
		if seen[b] {
			return fmt.Errorf("service %s: backend %s is listed twice", s.Name, b)
		}
		seen[b] = true
	}
	switch s.Type {
	case "", ClusterIP:
		s.Type = ClusterIP
		// A node port here would serve nothing, yet keep the port from others.
		if s.NodePort != 0 {
			return fmt.Errorf("service %s: a ClusterIP service has no node port (%d): give it --type NodePort", s.Name, s.NodePort)
		}
		if s.ExternalTrafficPolicy != "" && !s.External {
			return fmt.Errorf("service %s: externalTrafficPolicy %q is for NodePort and external services: give it --type NodePort", s.Name, s.ExternalTrafficPolicy)
		}
	case NodePort:
		if s.NodePort == 0 {
			return fmt.Errorf("service %s: a NodePort service needs --node-port", s.Name)
		}
	default:
		return fmt.Errorf("service %s: type %q must be ClusterIP or NodePort", s.Name, s.Type)
	}
	switch s.ExternalTrafficPolicy {
	case "", "Cluster", "Local":
	default:
		return fmt.Errorf("service %s: externalTrafficPolicy %q must be Cluster or Local", s.Name, s.ExternalTrafficPolicy)
	}
	return nil
}

// Services lists every service, ordered by name.
func (t *Tx) Services() ([]Service, error) {
	var out []Service
	err := forEachJSON(t, bucketServices, func(s Service) error {
		out = append(out, s)
		return nil
	})
	return out, err
}

// Service returns the service called name, or ErrNotFound.
func (t *Tx) Service(name string) (Service, error) {
	var s Service
	err := t.getJSON(bucketServices, []byte(name), &s)
	return s, err
}

// PutService adds or replaces a service (keeping its id when it exists),
// refusing one whose VIP:port/protocol or node port another service has.
func (t *Tx) PutService(s Service) (Service, error) {
	out, err := t.PutServices([]Service{s})
	if err != nil {
		return s, err
	}
	return out[0], nil
}

// serviceAddr is what makes a service unique: its VIP:port/protocol.
type serviceAddr struct {
	vip   netip.Addr
	port  uint16
	proto string
}

// PutServices is PutService for many services, checked against the store
// and each other in one pass (ten thousand take well under a second, where
// as many PutService calls would read every service each). The first one
// refused ends it with an error: the caller's transaction then writes none.
// It returns the services as stored, ids set.
func (t *Tx) PutServices(svcs []Service) ([]Service, error) {
	have := map[string]Service{}
	if err := forEachJSON(t, bucketServices, func(s Service) error { have[s.Name] = s; return nil }); err != nil {
		return nil, err
	}
	addrs, nodePorts := map[serviceAddr]string{}, map[serviceAddr]string{}
	claim := func(s Service) {
		addrs[serviceAddr{s.VIP, s.Port, s.Protocol}] = s.Name
		if s.NodePort != 0 {
			nodePorts[serviceAddr{port: s.NodePort, proto: s.Protocol}] = s.Name
		}
	}
	release := func(s Service) {
		if a := (serviceAddr{s.VIP, s.Port, s.Protocol}); addrs[a] == s.Name {
			delete(addrs, a)
		}
		if np := (serviceAddr{port: s.NodePort, proto: s.Protocol}); s.NodePort != 0 && nodePorts[np] == s.Name {
			delete(nodePorts, np)
		}
	}
	for _, o := range have {
		claim(o)
	}
	listed := make(map[string]bool, len(svcs))
	out := make([]Service, 0, len(svcs))
	for _, s := range svcs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		if listed[s.Name] {
			return nil, fmt.Errorf("service %s is listed twice", s.Name)
		}
		listed[s.Name] = true
		old, exists := have[s.Name]
		if exists {
			release(old) // a service may keep its own address
		}
		if o, dup := addrs[serviceAddr{s.VIP, s.Port, s.Protocol}]; dup {
			return nil, fmt.Errorf("service %s: %s:%d/%s is already service %s's", s.Name, s.VIP, s.Port, s.Protocol, o)
		}
		if o, dup := nodePorts[serviceAddr{port: s.NodePort, proto: s.Protocol}]; dup && s.NodePort != 0 {
			return nil, fmt.Errorf("service %s: node port %d/%s is already service %s's", s.Name, s.NodePort, s.Protocol, o)
		}
		s.ID = old.ID
		if s.ID == 0 {
			var err error
			if s.ID, err = t.counter(keyNextSvcID); err != nil {
				return nil, err
			}
		}
		if err := t.putJSON(bucketServices, []byte(s.Name), s); err != nil {
			return nil, err
		}
		claim(s)
		have[s.Name] = s
		out = append(out, s)
	}
	return out, CheckCapacity(slices.Collect(maps.Values(have)))
}

// CheckCapacity refuses a node's services (all of them) when the
// datapath's maps cannot hold them: found when they are stored, not at the
// next ADD, which would fail for it.
func CheckCapacity(svcs []Service) error {
	var c capacity
	for _, s := range svcs {
		c.count(s)
	}
	return c.check()
}

// capacity is what services take of sock-lb's and dsr's maps.
type capacity struct{ services, backends, nodePorts int }

func (c *capacity) count(s Service) {
	c.services++
	c.backends += len(s.Backends)
	if s.Type == NodePort {
		c.nodePorts++
	}
}

// fits counts s if the maps still hold it with it, and says why not if not.
func (c *capacity) fits(s Service) error {
	next := *c
	next.count(s)
	if err := next.check(); err != nil {
		return fmt.Errorf("service %s does not fit: %w", s.Name, err)
	}
	*c = next
	return nil
}

func (c capacity) check() error {
	switch {
	case c.services > MaxServices:
		return fmt.Errorf("%d services: at most %d fit in sock-lb's service map", c.services, MaxServices)
	case c.backends > MaxTotalBackends:
		return fmt.Errorf("%d backends in all services: at most %d fit in sock-lb's backend map", c.backends, MaxTotalBackends)
	case c.nodePorts > MaxNodePorts:
		return fmt.Errorf("%d NodePort services: at most %d fit in dsr's node-port map", c.nodePorts, MaxNodePorts)
	}
	return nil
}

// DeleteService removes the service called name; it reports whether it existed.
func (t *Tx) DeleteService(name string) (bool, error) {
	b := t.tx.Bucket(bucketServices)
	if b.Get([]byte(name)) == nil {
		return false, nil
	}
	return true, b.Delete([]byte(name))
}

// counter hands out ids from 1 under key, never reusing one.
func (t *Tx) counter(key []byte) (uint32, error) {
	meta := t.tx.Bucket(bucketMeta)
	id := uint32(1)
	if v := meta.Get(key); v != nil {
		id = binary.BigEndian.Uint32(v)
	}
	return id, meta.Put(key, binary.BigEndian.AppendUint32(nil, id+1))
}

// ProtoNumber is the service's IP protocol number (IPPROTO_TCP or _UDP).
func (s *Service) ProtoNumber() uint8 {
	if s.Protocol == UDP {
		return 17
	}
	return 6
}

// DefaultNodePortRange is the node ports dsr serves unless configured
// otherwise (Kubernetes' default).
const DefaultNodePortRange = "30000-32767"

// PortRange is the ports First to Last, both included.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string            { return fmt.Sprintf("%d-%d", r.First, r.Last) }
func (r PortRange) Contains(port uint16) bool { return port >= r.First && port <= r.Last }

// ParsePortRange reads "first-last": two ports 1..65535 in plain decimal
// (no sign, no leading zero, nothing before or after), first ≤ last; so a
// range it accepts prints back as it was written.
func ParsePortRange(s string) (PortRange, error) {
	first, last, dash := strings.Cut(s, "-")
	a, errA := parsePort(first)
	b, errB := parsePort(last)
	if !dash || errA != nil || errB != nil || a > b {
		return PortRange{}, fmt.Errorf("%q is not a port range such as %s (first-last, 1..65535)", s, DefaultNodePortRange)
	}
	return PortRange{a, b}, nil
}

var errNotPort = errors.New("not a port")

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != s {
		return 0, errNotPort
	}
	return uint16(n), nil
}

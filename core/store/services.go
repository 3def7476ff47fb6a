package store

import (
	"encoding/binary"
	"fmt"
	"net/netip"
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

// MaxBackends bounds one service's backends (the LB maps are sized for it).
const MaxBackends = 256

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
	// NodePort and ExternalTrafficPolicy apply to NodePort services.
	NodePort              uint16 `json:"nodePort,omitempty"`
	ExternalTrafficPolicy string `json:"externalTrafficPolicy,omitempty"`
}

var (
	bucketServices = []byte("services")
	keyNextSvcID   = []byte("next-service-id")
)

func init() { allBuckets = append(allBuckets, bucketServices) }

// Validate checks what a service must satisfy on its own.
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
	if err := s.Validate(); err != nil {
		return s, err
	}
	all, err := t.Services()
	if err != nil {
		return s, err
	}
	s.ID = 0
	for _, o := range all {
		if o.Name == s.Name {
			s.ID = o.ID
			continue
		}
		if o.VIP == s.VIP && o.Port == s.Port && o.Protocol == s.Protocol {
			return s, fmt.Errorf("service %s: %s:%d/%s is already service %s's", s.Name, s.VIP, s.Port, s.Protocol, o.Name)
		}
		if s.NodePort != 0 && o.NodePort == s.NodePort && o.Protocol == s.Protocol {
			return s, fmt.Errorf("service %s: node port %d/%s is already service %s's", s.Name, s.NodePort, s.Protocol, o.Name)
		}
	}
	if s.ID == 0 {
		if s.ID, err = t.counter(keyNextSvcID); err != nil {
			return s, err
		}
	}
	return s, t.putJSON(bucketServices, []byte(s.Name), s)
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

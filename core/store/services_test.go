package store

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testService(name, vipPort, proto string, backends ...string) Service {
	ap := netip.MustParseAddrPort(vipPort)
	s := Service{Name: name, VIP: ap.Addr(), Port: ap.Port(), Protocol: proto, Backends: []Backend{}}
	for _, b := range backends {
		bp := netip.MustParseAddrPort(b)
		s.Backends = append(s.Backends, Backend{IP: bp.Addr(), Port: bp.Port()})
	}
	return s
}

func putServices(t *testing.T, s *Store, svcs ...Service) ([]Service, error) {
	t.Helper()
	var out []Service
	err := s.Update(func(tx *Tx) (err error) {
		out, err = tx.PutServices(svcs)
		return err
	})
	return out, err
}

func listServices(t *testing.T, s *Store) map[string]Service {
	t.Helper()
	m := map[string]Service{}
	err := s.View(func(tx *Tx) error {
		all, err := tx.Services()
		for _, x := range all {
			m[x.Name] = x
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPutServices(t *testing.T) {
	s, _ := openTemp(t)
	web := testService("web", "198.18.100.1:80", TCP, "198.19.2.10:8080", "198.19.3.10:8080")
	dns := testService("dns", "198.18.100.1:53", UDP, "198.19.2.10:53")
	out, err := putServices(t, s, web, dns)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].ID == 0 || out[1].ID == 0 || out[0].ID == out[1].ID {
		t.Fatalf("ids %d, %d: want distinct, non-zero", out[0].ID, out[1].ID)
	}
	if out[0].Type != ClusterIP {
		t.Errorf("type %q, want the ClusterIP default", out[0].Type)
	}
	webID := out[0].ID

	// The protocol is kept in lower case, whatever the input.
	if out, err := putServices(t, s, testService("upper", "198.18.100.3:80", "UDP")); err != nil || out[0].Protocol != UDP {
		t.Fatalf("protocol UDP: %v, %+v", err, out)
	}
	// Same VIP:port, other protocol: another service. Same VIP, other port: too.
	if _, err := putServices(t, s, testService("web-udp", "198.18.100.1:80", UDP), testService("web2", "198.18.100.1:81", TCP)); err != nil {
		t.Fatalf("same VIP, other protocol or port: %v", err)
	}

	for _, tc := range []struct {
		name string
		svcs []Service
		want string
	}{
		{"duplicate VIP:port/protocol", []Service{testService("other", "198.18.100.1:80", TCP)},
			"service other: 198.18.100.1:80/tcp is already service web's"},
		{"duplicate inside the batch", []Service{testService("a", "198.18.100.2:80", TCP), testService("b", "198.18.100.2:80", TCP)},
			"service b: 198.18.100.2:80/tcp is already service a's"},
		{"name twice", []Service{testService("a", "198.18.100.2:80", TCP), testService("a", "198.18.100.3:80", TCP)},
			"service a is listed twice"},
		{"IPv6 VIP", []Service{testService("v6", "[2001:db8::1]:80", TCP)}, "is not an IPv4 address"},
		{"IPv6 backend", []Service{testService("v6", "198.18.100.2:80", TCP, "[2001:db8::1]:80")}, "must be an IPv4 address"},
		{"backend port 0", []Service{testService("p0", "198.18.100.2:80", TCP, "198.19.2.10:0")}, "port 1..65535"},
		{"port 0", []Service{testService("p0", "198.18.100.2:0", TCP)}, "port must be 1..65535"},
		{"protocol", []Service{testService("sctp", "198.18.100.2:80", "sctp")}, `protocol "sctp" must be tcp or udp`},
		{"backend twice", []Service{testService("twice", "198.18.100.2:80", TCP, "198.19.2.10:80", "198.19.2.10:80")}, "listed twice"},
		{"too many backends", []Service{func() Service {
			x := testService("big", "198.18.100.2:80", TCP)
			for i := range MaxBackends + 1 {
				x.Backends = append(x.Backends, Backend{IP: netip.AddrFrom4([4]byte{198, 19, byte(i / 200), byte(1 + i%200)}), Port: 80})
			}
			return x
		}()}, fmt.Sprintf("257 backends, at most %d", MaxBackends)},
		{"bad name", []Service{testService("a b", "198.18.100.2:80", TCP)}, "without spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := listServices(t, s)
			// A good service first: all or none.
			_, err := putServices(t, s, append([]Service{testService("good", "198.18.100.9:80", TCP)}, tc.svcs...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if after := listServices(t, s); len(after) != len(before) {
				t.Errorf("a refused batch changed the store: %d services, were %d", len(after), len(before))
			}
		})
	}

	// Replacing keeps the id, and the service may keep its own address.
	web.Backends = web.Backends[:1]
	out, err = putServices(t, s, web)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].ID != webID || len(listServices(t, s)["web"].Backends) != 1 {
		t.Errorf("replaced web: id %d (was %d), %+v", out[0].ID, webID, listServices(t, s)["web"])
	}
	// Moving web to a new address frees the old one, in the same batch.
	moved := testService("web", "198.18.100.5:80", TCP)
	taker := testService("taker", "198.18.100.1:80", TCP)
	if _, err := putServices(t, s, moved, taker); err != nil {
		t.Fatalf("move web and reuse its old address: %v", err)
	}
	// Ids are never reused.
	if err := s.Update(func(tx *Tx) error { _, err := tx.DeleteService("taker"); return err }); err != nil {
		t.Fatal(err)
	}
	out, err = putServices(t, s, taker)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range listServices(t, s) {
		if x.Name != "taker" && x.ID == out[0].ID {
			t.Errorf("re-added taker got id %d, %s's", out[0].ID, x.Name)
		}
	}
}

func TestPutServicesNodePorts(t *testing.T) {
	s, _ := openTemp(t)
	np := testService("np", "198.18.100.1:80", TCP)
	np.Type, np.NodePort = NodePort, 30080
	if _, err := putServices(t, s, np); err != nil {
		t.Fatal(err)
	}
	other := testService("np2", "198.18.100.2:80", TCP)
	other.Type, other.NodePort = NodePort, 30080
	if _, err := putServices(t, s, other); err == nil || !strings.Contains(err.Error(), "node port 30080/tcp is already service np's") {
		t.Fatalf("duplicate node port: %v", err)
	}
	other.Protocol = UDP
	if _, err := putServices(t, s, other); err != nil {
		t.Fatalf("same node port, other protocol: %v", err)
	}
}

// TestPutServicesScales: ten thousand in one batch, then the same again
// (every one replaced), each in well under the time a quadratic check took
// (minutes).
func TestPutServicesScales(t *testing.T) {
	s, _ := openTemp(t)
	var svcs []Service
	for i := range 10000 {
		svcs = append(svcs, testService(fmt.Sprintf("s%05d", i),
			fmt.Sprintf("198.18.100.%d:%d", 10+i/250, 10000+i%250), TCP, "198.19.2.10:8080", "198.19.3.10:8080"))
	}
	for round := range 2 {
		start := time.Now()
		if _, err := putServices(t, s, svcs...); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("round %d: 10,000 services took %v", round, d)
		}
	}
	if n := len(listServices(t, s)); n != 10000 {
		t.Errorf("%d services stored, want 10000", n)
	}
}

// A ClusterIP service with a node port or a traffic policy is refused: the
// port would serve nothing and keep another service from it.
func TestClusterIPRefusesNodePortFields(t *testing.T) {
	s, _ := openTemp(t)
	withPort := testService("cip", "198.18.100.1:80", TCP)
	withPort.NodePort = 30080
	if _, err := putServices(t, s, withPort); err == nil || !strings.Contains(err.Error(), "a ClusterIP service has no node port (30080)") {
		t.Errorf("ClusterIP with a node port: %v", err)
	}
	withPolicy := testService("cip", "198.18.100.1:80", TCP)
	withPolicy.ExternalTrafficPolicy = "Local"
	if _, err := putServices(t, s, withPolicy); err == nil || !strings.Contains(err.Error(), `externalTrafficPolicy "Local" is for NodePort and external services`) {
		t.Errorf("ClusterIP with a traffic policy: %v", err)
	}
	// An external VIP (Kubernetes externalIPs, a LoadBalancer's ingress IP)
	// takes the policy: it says how traffic from outside is balanced.
	ext := testService("ext", "198.18.100.3:80", TCP)
	ext.External, ext.ExternalTrafficPolicy = true, "Local"
	if _, err := putServices(t, s, ext); err != nil {
		t.Errorf("external VIP with a traffic policy: %v", err)
	}
	// The port stays free for a NodePort service.
	np := testService("np", "198.18.100.2:80", TCP)
	np.Type, np.NodePort, np.ExternalTrafficPolicy = NodePort, 30080, "Local"
	if _, err := putServices(t, s, np); err != nil {
		t.Fatal(err)
	}
}

// More NodePort services than dsr's maps hold are refused when stored, with
// the limit named, and the store keeps what it had.
func TestPutServicesNodePortCapacity(t *testing.T) {
	s, _ := openTemp(t)
	var svcs []Service
	for i := range MaxNodePorts + 1 {
		x := testService(fmt.Sprintf("np%04d", i), fmt.Sprintf("198.18.%d.%d:80", 100+i/250, 1+i%250), TCP)
		x.Type, x.NodePort = NodePort, uint16(1+i)
		svcs = append(svcs, x)
	}
	if _, err := putServices(t, s, svcs[:MaxNodePorts]...); err != nil {
		t.Fatalf("%d NodePort services: %v", MaxNodePorts, err)
	}
	_, err := putServices(t, s, svcs[MaxNodePorts])
	if want := fmt.Sprintf("%d NodePort services: at most %d fit in dsr's node-port map", MaxNodePorts+1, MaxNodePorts); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("one NodePort service too many: %v, want %q", err, want)
	}
	if n := len(listServices(t, s)); n != MaxNodePorts {
		t.Errorf("%d services stored after the refusal, want %d", n, MaxNodePorts)
	}
	// A ClusterIP service still fits.
	if _, err := putServices(t, s, testService("cip", "198.18.99.1:80", TCP)); err != nil {
		t.Errorf("a ClusterIP service beside %d NodePort services: %v", MaxNodePorts, err)
	}
}

// CheckCapacity: the totals of sock-lb's maps (storing 65,537 services or a
// million backends here would take the test minutes).
func TestCheckCapacity(t *testing.T) {
	full := make([]Backend, MaxBackends)
	for _, tc := range []struct {
		name             string
		services, perSvc int
		want             string
	}{
		{"every service map slot", MaxServices, 0, ""},
		{"one service too many", MaxServices + 1, 0, fmt.Sprintf("%d services: at most %d fit in sock-lb's service map", MaxServices+1, MaxServices)},
		{"every backend map slot", MaxTotalBackends / MaxBackends, MaxBackends, ""},
		{"backends past the map", MaxTotalBackends/MaxBackends + 1, MaxBackends,
			fmt.Sprintf("%d backends in all services: at most %d fit in sock-lb's backend map", MaxTotalBackends+MaxBackends, MaxTotalBackends)},
	} {
		svcs := make([]Service, tc.services)
		for i := range svcs {
			svcs[i] = Service{Name: strconv.Itoa(i), Backends: full[:tc.perSvc]}
		}
		err := CheckCapacity(svcs)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	for _, ok := range []string{"30000-32767", "1-65535", "1-1", "80-80", "8000-9000"} {
		r, err := ParsePortRange(ok)
		if err != nil || r.String() != ok {
			t.Errorf("%q: %v, %v", ok, r, err)
		}
	}
	for _, bad := range []string{"", "-", "30000", "30000-", "-32767", "30000-32767x", "x30000-32767", "1-2-3", "0-1", "1-65536",
		"32767-30000", "+1-2", "1-+2", "01-2", " 1-2", "1 - 2", "1-2 ", "1_0-20", "0x10-0x20", "-1-2"} {
		if r, err := ParsePortRange(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, r)
		} else if !strings.Contains(err.Error(), "is not a port range such as 30000-32767") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	r, _ := ParsePortRange("30000-32767")
	if !r.Contains(30000) || !r.Contains(32767) || r.Contains(29999) || r.Contains(32768) {
		t.Errorf("%v.Contains is wrong at the edges", r)
	}
}

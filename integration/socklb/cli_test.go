package socklb

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/integration/harness"
)

// TestServiceCLI: what `braid service` accepts and what it refuses, with a
// one-line reason and the store left as it was.
func TestServiceCLI(t *testing.T) {
	n := harness.New(t).AddNode(t)
	list := func() []store.Service {
		t.Helper()
		var svcs []store.Service
		n.BraidJSON(t, &svcs, "service", "list")
		return svcs
	}
	n.Braid(t, "service", "add", "web", "--vip", "198.18.100.10", "--port", "80", "--backend", "198.19.2.2:8080,198.19.3.2:8080")
	n.Braid(t, "service", "add", "web-udp", "--vip", "198.18.100.10", "--port", "80", "--protocol", "udp")
	n.Braid(t, "service", "add", "web-81", "--vip", "198.18.100.10", "--port", "81")
	if got := list(); len(got) != 3 {
		t.Fatalf("services %+v, want web, web-udp, web-81", got)
	}

	many := func(k int) string {
		var bs []string
		for i := range k {
			bs = append(bs, fmt.Sprintf("198.19.%d.%d:8080", 2+i/200, 2+i%200))
		}
		return strings.Join(bs, ",")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"duplicate VIP:port/protocol", []string{"service", "add", "other", "--vip", "198.18.100.10", "--port", "80"},
			"service other: 198.18.100.10:80/tcp is already service web's"},
		{"duplicate, protocol in capitals", []string{"service", "add", "other", "--vip", "198.18.100.10", "--port", "80", "--protocol", "UDP"},
			"198.18.100.10:80/udp is already service web-udp's"},
		{"too many backends", []string{"service", "add", "big", "--vip", "198.18.100.12", "--port", "80", "--backend", many(store.MaxBackends + 1)},
			fmt.Sprintf("%d backends, at most %d", store.MaxBackends+1, store.MaxBackends)},
		{"too many backends, set", []string{"service", "backends", "set", "web", "--backend", many(store.MaxBackends + 1)},
			fmt.Sprintf("at most %d", store.MaxBackends)},
		{"VIP not an address", []string{"service", "add", "x", "--vip", "198.18.100.300", "--port", "80"}, `--vip "198.18.100.300" is not an IPv4 address`},
		{"VIP IPv6", []string{"service", "add", "x", "--vip", "2001:db8::1", "--port", "80"}, "VIP 2001:db8::1 is not an IPv4 address"},
		{"port 0", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "0"}, "port must be 1..65535"},
		{"port too big", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "70000"}, `invalid argument "70000" for "--port"`},
		{"protocol", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "80", "--protocol", "sctp"}, `protocol "sctp" must be tcp or udp`},
		{"backend without port", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "80", "--backend", "198.19.2.2"}, `--backend "198.19.2.2" is not IPv4:PORT`},
		{"backend IPv6", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "80", "--backend", "[2001:db8::1]:80"}, `--backend "[2001:db8::1]:80" is not IPv4:PORT`},
		{"backend port 0", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "80", "--backend", "198.19.2.2:0"}, "must be an IPv4 address and a port 1..65535"},
		{"backend twice", []string{"service", "add", "x", "--vip", "198.18.100.12", "--port", "80", "--backend", "198.19.2.2:80,198.19.2.2:80"}, "listed twice"},
		{"backend set, bad address", []string{"service", "backends", "set", "web", "--backend", "198.19.2.2:80,nope"}, `--backend "nope" is not IPv4:PORT`},
		{"backends of no service", []string{"service", "backends", "set", "nope", "--backend", "198.19.2.2:80"}, `no service "nope"`},
		{"del of no service", []string{"service", "del", "nope"}, `no service "nope"`},
		{"missing --vip", []string{"service", "add", "x", "--port", "80"}, `"vip" not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := list()
			out, err := n.TryBraid(t, tc.args...)
			if err == nil {
				t.Fatalf("braid %s succeeded: %s", strings.Join(tc.args, " "), out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("braid %s: %v\nwant it to say %q", strings.Join(tc.args, " "), err, tc.want)
			}
			requireOneLine(t, err)
			if after := list(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a refused command changed the services:\n%+v\n%+v", before, after)
			}
		})
	}

	t.Run("exactly MaxBackends", func(t *testing.T) {
		n.Braid(t, "service", "add", "full", "--vip", "198.18.100.13", "--port", "80", "--backend", many(store.MaxBackends))
		n.Braid(t, "service", "del", "full")
	})

	t.Run("apply is all or none", func(t *testing.T) {
		before := list()
		good := service("a", "198.18.100.20:80", store.TCP, netip.MustParseAddrPort("198.19.2.2:8080"))
		for _, tc := range []struct {
			name string
			svcs []store.Service
			want string
		}{
			{"clash with the store", []store.Service{good, service("b", "198.18.100.10:80", store.TCP)}, "service b: 198.18.100.10:80/tcp is already service web's"},
			{"clash inside the file", []store.Service{good, service("b", "198.18.100.20:80", store.TCP)}, "service b: 198.18.100.20:80/tcp is already service a's"},
			{"name twice", []store.Service{good, service("a", "198.18.100.21:80", store.TCP)}, "service a is listed twice"},
			{"bad protocol", []store.Service{good, service("b", "198.18.100.21:80", "icmp")}, `protocol "icmp" must be tcp or udp`},
			{"no port", []store.Service{good, service("b", "198.18.100.21:0", store.TCP)}, "port must be 1..65535"},
		} {
			_, err := n.TryBraid(t, "service", "apply", "-f", writeJSON(t, tc.svcs))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: apply: %v, want %q", tc.name, err, tc.want)
				continue
			}
			requireOneLine(t, err)
		}
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(`{"name": "not a list"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := n.TryBraid(t, "service", "apply", "-f", bad); err == nil || !strings.Contains(err.Error(), "not a JSON list of services") {
			t.Errorf("apply of a non-list: %v", err)
		}
		if after := list(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("refused applies changed the services:\n%+v\n%+v", before, after)
		}
	})

	t.Run("list -o json round-trips through apply", func(t *testing.T) {
		before := list()
		n.Braid(t, "service", "apply", "-f", writeJSON(t, before))
		if after := list(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("apply of list's own output changed the services (ids must be kept):\n%+v\n%+v", before, after)
		}
	})
}

// requireOneLine: braid's error is one line (TryBraid's error ends with
// the command's stderr).
func requireOneLine(t *testing.T, err error) {
	t.Helper()
	if msg := strings.TrimSpace(err.Error()); strings.Contains(msg, "\n") {
		t.Errorf("the error is not one line:\n%s", msg)
	}
}

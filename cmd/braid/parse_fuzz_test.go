package main

// Fuzz targets of what braid reads from its command line and the node's
// conflist: a value it accepts formats back to text it reads as the same
// value; one it rejects gets an error that names the flag, or the file, at
// fault; nothing panics.

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseBackends: --backend lists.
func FuzzParseBackends(f *testing.F) {
	for _, s := range []string{"198.19.2.7:8080", " 198.19.2.7:80 , 198.19.3.8:80", "", "  ", "198.19.2.7:0", "198.19.2.7:080",
		"198.19.2.7", "198.19.2.7:65536", "[::1]:80", "[::ffff:198.19.2.7]:80", "198.19.2.7:80,", ",", "198.19.2.07:80", "x:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bs, err := parseBackends(s)
		if err != nil {
			requireNamesPart(t, s, err)
			return
		}
		parts := make([]string, len(bs))
		for i, b := range bs {
			if !b.IP.Is4() {
				t.Fatalf("%q: accepted backend %s", s, b)
			}
			parts[i] = fmt.Sprintf("%s:%d", b.IP, b.Port)
		}
		again, err := parseBackends(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, bs) {
			t.Fatalf("%q parsed to %v, formatted %q, which parses to %v, %v", s, bs, parts, again, err)
		}
	})
}

// requireNamesPart: the error quotes one element of the list, and that
// element alone is rejected too.
func requireNamesPart(t *testing.T, s string, err error) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), "--backend ") {
		t.Fatalf("%q: error %q does not name --backend", s, err)
	}
	for _, part := range strings.Split(s, ",") {
		if strings.Contains(err.Error(), fmt.Sprintf("%q", part)) {
			if _, alone := parseBackends(part); alone == nil && strings.TrimSpace(part) != "" {
				t.Fatalf("%q: error %q blames %q, which is a backend", s, err, part)
			}
			return
		}
	}
	t.Fatalf("%q: error %q names none of its elements", s, err)
}

// FuzzParseNode: a node's --name, --node-ip, --pod-cidr and --device.
func FuzzParseNode(f *testing.F) {
	for _, c := range [][2]string{
		{"198.18.0.1", "198.19.1.0/24"}, {"198.18.0.1", "198.19.1.0/30"}, {"198.18.0.1", "198.19.1.0/31"},
		{"198.18.0.1", "198.19.1.1/24"}, {"198.18.0.1", "0.0.0.0/0"}, {"::1", "198.19.1.0/24"}, {"198.18.0.1", "fd00::/64"},
		{"::ffff:198.18.0.1", "198.19.1.0/24"}, {"198.18.0.01", "198.19.1.0/24"}, {"198.18.0.1", "198.19.1.0/024"},
		{"", ""}, {"198.18.0.1", "198.19.1.0"},
	} {
		f.Add("node1", c[0], c[1], "eth0")
	}
	f.Fuzz(func(t *testing.T, name, nodeIP, podCIDR, device string) {
		n, err := parseNode(name, nodeIP, podCIDR, device)
		if err != nil {
			requireNamesFlag(t, err, nodeIP, podCIDR, func(ip, cidr string) error {
				_, err := parseNode(name, ip, cidr, device)
				return err
			})
			return
		}
		if !n.NodeIP.Is4() || !n.PodCIDR.Addr().Is4() || n.PodCIDR != n.PodCIDR.Masked() || n.PodCIDR.Bits() > 30 ||
			n.Name != name || n.Device != device || name == "" || strings.ContainsAny(name, "/ ") ||
			device == "" || len(device) > 15 || strings.ContainsAny(device, "/ ") {
			t.Fatalf("parseNode(%q, %q, %q, %q) accepted %+v", name, nodeIP, podCIDR, device, n)
		}
		again, err := parseNode(n.Name, n.NodeIP.String(), n.PodCIDR.String(), n.Device)
		if err != nil || again != n {
			t.Fatalf("%+v formatted parses to %+v, %v", n, again, err)
		}
	})
}

// requireNamesFlag: the error names --node-ip or --pod-cidr, and with that
// flag's value replaced by a good one, parse no longer fails that way.
func requireNamesFlag(t *testing.T, err error, nodeIP, podCIDR string, parse func(nodeIP, podCIDR string) error) {
	t.Helper()
	var fixed error
	switch {
	case strings.HasPrefix(err.Error(), "--name "), strings.HasPrefix(err.Error(), "--device "):
		return // names and devices: see the checks in FuzzParseNode
	case strings.HasPrefix(err.Error(), "--node-ip "):
		fixed = parse("198.18.0.1", podCIDR)
	case strings.HasPrefix(err.Error(), "--pod-cidr "):
		good := "198.19.1.0/24" // one that does not hold the node IP
		if ip, err := netip.ParseAddr(nodeIP); err == nil && netip.MustParsePrefix(good).Contains(ip) {
			good = "198.19.2.0/24"
		}
		fixed = parse(nodeIP, good)
	default:
		t.Fatalf("error %q names no flag", err)
	}
	if fixed != nil && fixed.Error() == err.Error() {
		t.Fatalf("error %q, and the same with that flag set right", err)
	}
}

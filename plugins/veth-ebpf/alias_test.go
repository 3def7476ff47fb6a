package main

import (
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/store"
)

// FuzzEndpointAlias: a host veth's alias is kernel state anyone with
// CAP_NET_ADMIN can write, and `veth-ebpf rebuild` trusts what it parses
// from it. Parsing never panics; what it accepts is exactly an alias braid
// would have written; and braid's own aliases parse back.
func FuzzEndpointAlias(f *testing.F) {
	for _, s := range []string{"braid:c1/eth0", "braid:c/1/eth0", "braid:/eth0", "braid:c1/", "braid:", "other:c1/eth0",
		"braid:" + strings.Repeat("x", 300) + "/eth0", "braid:c1/eth0/"} {
		f.Add(s, "c1", "eth0")
	}
	f.Fuzz(func(t *testing.T, alias, cid, ifName string) {
		if c, i, ok := parseEndpointAlias(alias); ok {
			if c == "" || i == "" || strings.Contains(i, "/") || endpointAlias(c, i) != alias {
				t.Errorf("parseEndpointAlias(%q) = %q, %q", alias, c, i)
			}
		}
		if cid == "" || ifName == "" || strings.Contains(ifName, "/") {
			return // not an attachment CNI can name
		}
		c, i, ok := parseEndpointAlias(endpointAlias(cid, ifName))
		if !ok || c != cid || i != ifName {
			t.Errorf("alias of %q/%q parsed back as %q/%q (%v)", cid, ifName, c, i, ok)
		}
		if id := store.AttachmentID(cid, ifName); len(id) != 12 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Errorf("store.AttachmentID(%q, %q) = %q", cid, ifName, id)
		}
	})
}

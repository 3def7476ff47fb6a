package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
)

// clusterCIDR is kube-proxy's --cluster-cidr: every node's pods.
const clusterCIDR = "198.19.0.0/16"

// kubeProxyNAT is the nat table kube-proxy's iptables mode writes for
// ports (one endpoint each), in iptables-restore format: PREROUTING and
// OUTPUT jump to KUBE-SERVICES, which holds one rule per service port, in
// order, each jumping to the port's KUBE-SVC-<hash> chain, which jumps to
// its endpoint's KUBE-SEP-<hash> chain, which DNATs; KUBE-SERVICES ends
// with the jump to KUBE-NODEPORTS for local addresses; traffic marked by
// KUBE-MARK-MASQ is masqueraded in KUBE-POSTROUTING.
func kubeProxyNAT(ports []svcPort) string {
	var chains, rules strings.Builder
	chain := func(name string) { fmt.Fprintf(&chains, ":%s - [0:0]\n", name) }
	rule := func(format string, args ...any) { fmt.Fprintf(&rules, "-A "+format+"\n", args...) }

	chains.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	for _, c := range []string{"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"} {
		chain(c)
	}
	rule(`PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	rule(`OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	rule(`POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`)
	rule(`KUBE-MARK-MASQ -j MARK --or-mark 0x4000`)
	rule(`KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN`)
	rule(`KUBE-POSTROUTING -j MARK --xor-mark 0x4000`)
	rule(`KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`)
	for _, p := range ports {
		svc, sep := "KUBE-SVC-"+chainHash(p.kubeName()+"tcp"), "KUBE-SEP-"+chainHash(p.kubeName()+"tcp"+p.backend.String())
		chain(svc)
		chain(sep)
		name := p.kubeName()
		rule(`KUBE-SERVICES -d %s/32 -p tcp -m comment --comment "%s cluster IP" -m tcp --dport %d -j %s`, p.vip, name, p.port, svc)
		if p.nodePort != 0 {
			rule(`KUBE-NODEPORTS -p tcp -m comment --comment "%s" -m tcp --dport %d -j KUBE-MARK-MASQ`, name, p.nodePort)
			rule(`KUBE-NODEPORTS -p tcp -m comment --comment "%s" -m tcp --dport %d -j %s`, name, p.nodePort, svc)
		}
		rule(`%s ! -s %s -d %s/32 -p tcp -m comment --comment "%s cluster IP" -m tcp --dport %d -j KUBE-MARK-MASQ`,
			svc, clusterCIDR, p.vip, name, p.port)
		rule(`%s -m comment --comment "%s -> %s" -j %s`, svc, name, p.backend, sep)
		rule(`%s -s %s/32 -m comment --comment "%s" -j KUBE-MARK-MASQ`, sep, p.backend.Addr(), name)
		rule(`%s -p tcp -m comment --comment "%s" -m tcp -j DNAT --to-destination %s`, sep, name, p.backend)
	}
	rule(`KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`)
	return chains.String() + rules.String() + "COMMIT\n"
}

// chainHash names a chain as kube-proxy does: 16 characters of the
// base32 of a SHA-256.
func chainHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// loadNAT replaces the nat table of netns ns with rules, as kube-proxy's
// iptables-restore does, and returns how many rules KUBE-SERVICES holds.
func loadNAT(ctx context.Context, ns, rules string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+kit.NSPath(ns), "iptables-restore")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = strings.NewReader(rules), &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("iptables-restore in %s: %w: %s", ns, err, kit.LastLines(stderr.String(), 5))
	}
	out, err := kit.NS(ns).Run(ctx, time.Minute, "iptables", "-t", "nat", "-S", "KUBE-SERVICES")
	if err != nil {
		return 0, err
	}
	return strings.Count(out, "\n-A KUBE-SERVICES "), nil
}

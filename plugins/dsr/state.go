package main

// The lifetimes of dsr's flow and SNAT state: the settings the programs
// read, the SNAT port range, and the reclaiming of expired entries by
// every reconcile (ADD, GC, the agent, braid sync).

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/braid-cni/braid/core/plugin"
	"github.com/braid-cni/braid/core/store"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ephemeralPath holds the node's ephemeral port range, "first\tlast".
const ephemeralPath = "/proc/sys/net/ipv4/ip_local_port_range"

// snatPorts is the range SNAT flows take their node ports from: the
// configured one, else the largest part of 1024-65535 that neither the
// node's own sockets (ephemeral ports) nor node ports use. It must not
// overlap either: a reply to one of the node's own connections would be
// taken for an SNAT flow's.
func (d *datapath) snatPorts() (store.PortRange, error) {
	eph, err := ephemeralPorts()
	if err != nil {
		return store.PortRange{}, err
	}
	if r := d.conf.snatRange; r != nil {
		if overlaps(*r, eph) {
			return store.PortRange{}, fmt.Errorf("snatPortRange %s overlaps the node's ephemeral ports %s (%s)", r, eph, ephemeralPath)
		}
		return *r, nil
	}
	r, ok := largestFree(store.PortRange{First: 1024, Last: 65535}, eph, d.conf.portRange)
	if !ok {
		return store.PortRange{}, fmt.Errorf("no ports for SNAT outside the ephemeral ports %s and nodePortRange %s: set snatPortRange", eph, d.conf.portRange)
	}
	return r, nil
}

func ephemeralPorts() (store.PortRange, error) {
	b, err := os.ReadFile(ephemeralPath)
	if err != nil {
		return store.PortRange{}, err
	}
	r, err := store.ParsePortRange(strings.Join(strings.Fields(string(b)), "-"))
	if err != nil {
		return store.PortRange{}, fmt.Errorf("%s: %w", ephemeralPath, err)
	}
	return r, nil
}

// largestFree is the largest range inside all that overlaps none of used.
func largestFree(all store.PortRange, used ...store.PortRange) (store.PortRange, bool) {
	free := []store.PortRange{all}
	for _, u := range used {
		var next []store.PortRange
		for _, f := range free {
			if !overlaps(f, u) {
				next = append(next, f)
				continue
			}
			if u.First > f.First {
				next = append(next, store.PortRange{First: f.First, Last: u.First - 1})
			}
			if u.Last < f.Last {
				next = append(next, store.PortRange{First: u.Last + 1, Last: f.Last})
			}
		}
		free = next
	}
	var best store.PortRange
	found := false
	for _, f := range free {
		if !found || f.Last-f.First > best.Last-best.First {
			best, found = f, true
		}
	}
	return best, found
}

// setLifetimes puts the lifetimes and the SNAT range into s.
func (d *datapath) setLifetimes(s *dsrDsrConf, snat store.PortRange) {
	l := d.conf.life
	s.TcpSynNs = uint64(l.tcpSyn.Nanoseconds())
	s.TcpEstNs = uint64(l.tcpEstablished.Nanoseconds())
	s.TcpCloseNs = uint64(l.tcpClose.Nanoseconds())
	s.TcpResetNs = uint64(l.tcpReset.Nanoseconds())
	s.UdpNs = uint64(l.udp.Nanoseconds())
	s.SnatLo = snat.First
	s.SnatSpan = snat.Last - snat.First + 1
}

// now is the clock the programs stamp entries with (bpf_ktime_get_ns).
func now() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0 // reclaims nothing
	}
	return uint64(ts.Nano())
}

// reclaim deletes the expired entries of the flow and SNAT maps, and the
// SNAT client entries whose port is no longer theirs. The programs treat
// an expired entry as absent; this gives the room back.
func (d *datapath) reclaim(r *plugin.Report) error {
	t := now()
	n := 0
	for _, m := range []*ebpf.Map{d.objs.DsrFlows, d.objs.DsrFlowsNew} {
		var k dsrFlowKey
		var v dsrFlowVal
		var stale []dsrFlowKey
		it := m.Iterate()
		for it.Next(&k, &v) {
			if v.Expires <= t {
				stale = append(stale, k)
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		if err := deleteAll(m, stale); err != nil {
			return err
		}
		n += len(stale)
	}
	var rk dsrSnatRevKey
	var cl dsrSnatClient
	var stale []dsrSnatRevKey
	live := map[dsrSnatFwdKey]uint16{}
	it := d.objs.DsrSnat.Iterate()
	for it.Next(&rk, &cl) {
		if cl.Expires <= t {
			stale = append(stale, rk)
		} else {
			live[dsrSnatFwdKey{ClientIp: cl.Ip, SvcIp: cl.SvcIp, ClientPort: cl.Port, NodePort: cl.NodePort, Proto: rk.Proto}] = rk.SnatPort
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("dsr_snat: %w", err)
	}
	if err := deleteAll(d.objs.DsrSnat, stale); err != nil {
		return err
	}
	n += len(stale)
	var fk dsrSnatFwdKey
	var port uint16
	var orphans []dsrSnatFwdKey
	fit := d.objs.DsrSnatFwd.Iterate()
	for fit.Next(&fk, &port) {
		if p, ok := live[fk]; !ok || p != port {
			orphans = append(orphans, fk)
		}
	}
	if err := fit.Err(); err != nil {
		return fmt.Errorf("dsr_snat_fwd: %w", err)
	}
	if err := deleteAll(d.objs.DsrSnatFwd, orphans); err != nil {
		return err
	}
	if n += len(orphans); n > 0 {
		r.Changed("%d expired flow and SNAT entries reclaimed", n)
	}
	return nil
}

// deleteAll deletes keys from m; one that went meanwhile is no error.
func deleteAll[K any](m *ebpf.Map, keys []K) error {
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

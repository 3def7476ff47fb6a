package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// SyncResult is what a Sync changed and what it had to leave out.
type SyncResult struct {
	Changed   int
	Skipped   []string // one line per entry that was refused, and why
	Unchanged int      // entries already as wanted
}

// SyncPeers makes the peers exactly want (the agent's view of the cluster),
// writing only what differs. A peer that is invalid or overlaps this node or
// an earlier peer (by name) is skipped and reported, not fatal: one bad
// registration must not keep the rest of the cluster from a node.
func (t *Tx) SyncPeers(want []Peer) (SyncResult, error) {
	var res SyncResult
	want = slices.Clone(want)
	SortPeers(want)
	var taken []Peer
	if self, err := t.Node(); err == nil {
		taken = append(taken, thisNode(self))
	}
	keep := map[string]Peer{}
	for _, p := range want {
		if err := validPeer(p, taken); err != nil {
			res.Skipped = append(res.Skipped, err.Error())
			continue
		}
		taken = append(taken, p)
		keep[p.Name] = p
	}
	b := t.tx.Bucket(bucketPeers)
	have, err := t.Peers()
	if err != nil {
		return res, err
	}
	for _, p := range have {
		if _, ok := keep[p.Name]; !ok {
			if err := b.Delete([]byte(p.Name)); err != nil {
				return res, err
			}
			res.Changed++
		}
	}
	for _, p := range want {
		if _, ok := keep[p.Name]; !ok {
			continue
		}
		changed, err := t.putIfChanged(bucketPeers, []byte(p.Name), p)
		if err != nil {
			return res, err
		}
		res.count(changed)
	}
	return res, nil
}

func validPeer(p Peer, taken []Peer) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, o := range taken {
		if err := conflict(p, o); err != nil {
			return err
		}
	}
	return nil
}

// SyncServices makes the services exactly want (those Admit takes),
// writing only what differs and keeping each service's id across updates.
func (t *Tx) SyncServices(want []Service) (SyncResult, error) {
	var res SyncResult
	have := map[string]Service{}
	if err := forEachJSON(t, bucketServices, func(s Service) error { have[s.Name] = s; return nil }); err != nil {
		return res, err
	}
	ok, skipped := Admit(want)
	res.Skipped = skipped
	keep := make(map[string]bool, len(ok))
	for _, s := range ok {
		keep[s.Name] = true
	}
	b := t.tx.Bucket(bucketServices)
	for name := range have {
		if !keep[name] {
			if err := b.Delete([]byte(name)); err != nil {
				return res, err
			}
			res.Changed++
		}
	}
	for _, s := range ok {
		s.ID = have[s.Name].ID
		if s.ID == 0 {
			id, err := t.counter(keyNextSvcID)
			if err != nil {
				return res, err
			}
			s.ID = id
		}
		changed, err := t.putIfChanged(bucketServices, []byte(s.Name), s)
		if err != nil {
			return res, err
		}
		res.count(changed)
	}
	return res, nil
}

// Admit is what of want a node enforces, ordered by name: the services
// that are valid (normalized by Validate), whose address and node port no
// earlier one (by name) has, as many as the datapath's maps hold. skipped
// says why each other one is left out; one bad entry never keeps the rest
// from the node. Services are checked against each other in one pass
// (PutService, one at a time, reads them all per call: too slow for ten
// thousand).
func Admit(want []Service) (ok []Service, skipped []string) {
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	type addr struct {
		vip   string
		port  uint16
		proto string
	}
	addrs, nodePorts := map[addr]string{}, map[addr]string{}
	keep := map[string]bool{}
	var used capacity // beyond the maps' capacity, the rest is skipped, not every ADD failed
	for _, s := range want {
		if err := s.Validate(); err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		if keep[s.Name] {
			skipped = append(skipped, fmt.Sprintf("service %s is listed twice", s.Name))
			continue
		}
		a := addr{s.VIP.String(), s.Port, s.Protocol}
		if o, dup := addrs[a]; dup {
			skipped = append(skipped, fmt.Sprintf("service %s: %s:%d/%s is already service %s's", s.Name, s.VIP, s.Port, s.Protocol, o))
			continue
		}
		np := addr{"", s.NodePort, s.Protocol}
		if o, dup := nodePorts[np]; dup && s.NodePort != 0 {
			skipped = append(skipped, fmt.Sprintf("service %s: node port %d/%s is already service %s's", s.Name, s.NodePort, s.Protocol, o))
			continue
		}
		if err := used.fits(s); err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		addrs[a], keep[s.Name] = s.Name, true
		if s.NodePort != 0 {
			nodePorts[np] = s.Name
		}
		ok = append(ok, s)
	}
	return ok, skipped
}

func (r *SyncResult) count(changed bool) {
	if changed {
		r.Changed++
	} else {
		r.Unchanged++
	}
}

// putIfChanged writes v under key unless the same JSON is there already.
func (t *Tx) putIfChanged(bucket, key []byte, v any) (bool, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	b := t.tx.Bucket(bucket)
	if bytes.Equal(b.Get(key), raw) {
		return false, nil
	}
	return true, b.Put(key, raw)
}

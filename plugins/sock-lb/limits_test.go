package main

import (
	"testing"

	"github.com/braid-cni/braid/core/store"
)

// The store refuses services beyond what sock-lb's maps hold (so that a
// sync never meets a full map), so its limits must be the maps' sizes.
func TestMapsHoldWhatTheStoreAllows(t *testing.T) {
	spec, err := loadSockLb()
	if err != nil {
		t.Fatal(err)
	}
	for m, limit := range map[string]int{
		sockLbMapLbServices: store.MaxServices, sockLbMapLbBackends: store.MaxTotalBackends, sockLbMapLbNodeports: store.MaxNodePorts,
	} {
		if got := spec.Maps[m].MaxEntries; got != uint32(limit) {
			t.Errorf("%s holds %d, the store allows %d", m, got, limit)
		}
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/braid-cni/braid/core/notfound"
	"github.com/braid-cni/braid/core/store"
)

// CHECK's "missing" keeps the not-found it stands for (and only a
// not-found says "missing": other failures keep their own cause).
func TestCheckHostMissingKeepsCause(t *testing.T) {
	err := checkHost(store.Endpoint{HostIfName: "brdnosuchveth"})
	if err == nil || !strings.Contains(err.Error(), "is missing") || !notfound.Is(err) {
		t.Errorf("checkHost on an absent veth: %v (not-found: %v)", err, notfound.Is(err))
	}
	if err := deleteHostVeth("brdnosuchveth"); err != nil {
		t.Errorf("deleting an absent veth: %v", err)
	}
}

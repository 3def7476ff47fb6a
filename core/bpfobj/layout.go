//go:build !braid_layout_v2

package bpfobj

import "github.com/cilium/ebpf"

// adjustLayout leaves the plugin's maps as compiled. A build with the tag
// braid_layout_v2 (layout_v2.go) changes them instead, to stand for a newer
// braid whose map layout changed: the upgrade suite installs such a build
// under running pods.
func adjustLayout(*ebpf.CollectionSpec) {}

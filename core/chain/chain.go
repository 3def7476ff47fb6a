// Package chain helps chained plugins read what the interface plugin before
// them produced: the prevResult, its host-side and pod-side interfaces.
package chain

import (
	"github.com/braid-cni/braid/core/cnierr"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Attachment is the part of prevResult a chained plugin acts on.
type Attachment struct {
	Result *current.Result
	Host   *current.Interface // the interface without a sandbox: the host veth
	Pod    *current.Interface // the interface in the pod's netns
}

// FromPrevResult finds the host and pod interfaces in prevResult. A missing
// prevResult means the plugin is first in the conflist, which it must not be.
func FromPrevResult(prev types.Result, plugin string) (*Attachment, error) {
	if prev == nil {
		return nil, cnierr.Invalid("prevResult", "%s is a chained plugin: put it after an interface plugin such as veth-ebpf in the conflist", plugin)
	}
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	a := &Attachment{Result: res}
	for _, iface := range res.Interfaces {
		switch {
		case iface.Sandbox == "" && a.Host == nil:
			a.Host = iface
		case iface.Sandbox != "" && a.Pod == nil:
			a.Pod = iface
		}
	}
	if a.Host == nil || a.Pod == nil {
		return nil, cnierr.Invalid("prevResult", "no host-side and pod-side interface pair in the previous plugin's result")
	}
	return a, nil
}

package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"time"
)

// Endpoint is one pod attachment on this node: the endpoint model every
// plugin shares. Its key is ContainerID/IfName, as CNI identifies attachments.
type Endpoint struct {
	ID          uint32 `json:"id"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Network is the CNI network (the config's name) that made the
	// attachment: a CNI GC collects only its own network's. Empty for
	// attachments recorded before braid kept it.
	Network string `json:"network,omitempty"`
	// Secondary marks an attachment made while another braid attachment
	// was the pod's (a second interface, as Multus adds): it gets its
	// address and gateway but not the pod's default route.
	Secondary   bool       `json:"secondary,omitempty"`
	Netns       string     `json:"netns"`
	IPv4        netip.Addr `json:"ipv4"`
	HostIfName  string     `json:"hostIfName"`
	HostIfIndex int        `json:"hostIfIndex"`
	HostMAC     string     `json:"hostMAC"`
	PodMAC      string     `json:"podMAC"`
	MTU         int        `json:"mtu"`
	// IPAMPlugin names the delegated IPAM plugin; empty when braid allocated.
	IPAMPlugin string    `json:"ipamPlugin,omitempty"`
	Created    time.Time `json:"created"`
	// PodNamespace and PodName are the Kubernetes pod, when the runtime
	// said (CNI_ARGS K8S_POD_NAMESPACE, K8S_POD_NAME).
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
}

// EndpointKey identifies an attachment the way CNI does.
func EndpointKey(containerID, ifName string) string { return containerID + "/" + ifName }

// AttachmentID is a short, stable id of an attachment (12 hex digits of
// sha256(containerID/ifName)). Plugins name what they create per attachment
// (host veth, link pins) with it, so DEL and GC find it with no state.
func AttachmentID(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(EndpointKey(containerID, ifName)))
	return hex.EncodeToString(sum[:])[:12]
}

// Key is the endpoint's store key.
func (e Endpoint) Key() string { return EndpointKey(e.ContainerID, e.IfName) }

// Endpoint returns the endpoint stored under key, or ErrNotFound.
func (t *Tx) Endpoint(key string) (Endpoint, error) {
	var e Endpoint
	err := t.getJSON(bucketEndpoints, []byte(key), &e)
	return e, err
}

// PutEndpoint stores e, giving it an id if it has none.
func (t *Tx) PutEndpoint(e *Endpoint) error {
	if e.ID == 0 {
		id, err := t.nextEndpointID()
		if err != nil {
			return err
		}
		e.ID = id
	}
	return t.putJSON(bucketEndpoints, []byte(e.Key()), e)
}

// DeleteEndpoint removes the endpoint under key; absent is fine.
func (t *Tx) DeleteEndpoint(key string) error {
	return t.tx.Bucket(bucketEndpoints).Delete([]byte(key))
}

// Endpoints lists every endpoint, ordered by key.
func (t *Tx) Endpoints() ([]Endpoint, error) {
	var eps []Endpoint
	err := forEachJSON(t, bucketEndpoints, func(e Endpoint) error {
		eps = append(eps, e)
		return nil
	})
	return eps, err
}

// nextEndpointID hands out ids from 1, never reusing one while the store lives.
func (t *Tx) nextEndpointID() (uint32, error) { return t.counter(keyNextID) }

// RestoreEndpoint records an endpoint recovered from kernel state, with its
// id and its address allocated to it, keeping ids from being handed out twice.
func (t *Tx) RestoreEndpoint(e Endpoint) error {
	if err := t.putJSON(bucketEndpoints, []byte(e.Key()), e); err != nil {
		return err
	}
	if err := t.Allocate(e.IPv4, e.Key()); err != nil {
		return err
	}
	next, err := t.counter(keyNextID)
	if err != nil {
		return err
	}
	if next <= e.ID { // skip past the restored id
		return t.tx.Bucket(bucketMeta).Put(keyNextID, binary.BigEndian.AppendUint32(nil, e.ID+1))
	}
	return nil
}

// InNetwork reports whether a CNI GC of network may collect e: an
// attachment of another network never; one recorded before braid kept the
// network name (empty) neither, as it cannot tell whose it is (a DEL still
// removes it, and the agent's collect what no endpoint owns).
func (e Endpoint) InNetwork(network string) bool { return e.Network == network }

package kubernetes

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const vxlanLB = "vxlan-lb.conflist"

// A selector-less Service with a hand-made EndpointSlice, reached through
// its ClusterIP from a pod on another node: every change of the slice
// (endpoints added and removed, scale to zero, terminating endpoints) is
// what traffic does within a second of the API write.
func TestEndpointChanges(t *testing.T) {
	c := newCluster(t, vxlanLB, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	b1 := c.backend(t, 1, "b1", 8080)
	b2 := c.backend(t, 2, "b2", 8080)
	client := probe(t, n3, n3.chain.AddPod(t, "client"))
	port := []slicePort{{"http", 8080}}

	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: tcpPorts("http:80:8080")}})
	vip := clusterIP(svc, 80)
	c.putSlice(t, "web", "web-1", port, readyEP(b1, n1))
	within(t, start, "a new Service with one endpoint", exactly(t, client, vip, "b1"))

	start = time.Now()
	c.putSlice(t, "web", "web-1", port, readyEP(b1, n1), readyEP(b2, n2))
	within(t, start, "an endpoint added", exactly(t, client, vip, "b1", "b2"))

	start = time.Now()
	c.putSlice(t, "web", "web-1", port, readyEP(b2, n2))
	within(t, start, "an endpoint removed", exactly(t, client, vip, "b2"))

	// Scale to zero: the ClusterIP refuses (kube-proxy answers REJECT).
	start = time.Now()
	c.putSlice(t, "web", "web-1", port)
	within(t, start, "scaled to zero", exactly(t, client, vip, "!ECONNREFUSED"))

	// Rolling out: b2 terminating but still serving, nothing ready: the
	// terminating one keeps the Service up...
	start = time.Now()
	c.putSlice(t, "web", "web-1", port, ep{pod: b2, node: n2, serving: true, terminating: true})
	within(t, start, "only a serving terminating endpoint", exactly(t, client, vip, "b2"))
	// ...until a ready one comes, which takes all the traffic.
	start = time.Now()
	c.putSlice(t, "web", "web-1", port, ep{pod: b2, node: n2, serving: true, terminating: true}, readyEP(b1, n1))
	within(t, start, "a ready endpoint beside a terminating one", exactly(t, client, vip, "b1"))
	// Not ready and not serving is never used.
	start = time.Now()
	c.putSlice(t, "web", "web-1", port, ep{pod: b1, node: n1}, ep{pod: b2, node: n2, terminating: true})
	within(t, start, "no serving endpoint", exactly(t, client, vip, "!ECONNREFUSED"))

	// Deleting the Service takes its ClusterIP out of the datapath.
	start = time.Now()
	c.putSlice(t, "web", "web-1", port, readyEP(b1, n1))
	within(t, start, "endpoints back", exactly(t, client, vip, "b1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start = time.Now()
	if err := c.cp.Client.CoreV1().Services(c.ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Its ClusterIP is then nobody's: nothing answers (kube-proxy drops
	// it too).
	within(t, start, "the Service deleted", unanswered(t, client, vip))
}

// Named target ports and multi-port Services: each Service port is its own
// braid service; a named targetPort is resolved per endpoint from the
// slices' ports, so endpoints in two slices may listen on different
// numbers; both slices of the Service are merged.
func TestNamedPortsAndSlices(t *testing.T) {
	c := newCluster(t, vxlanLB, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	b1 := c.backend(t, 1, "b1", 8080, 9090)
	b2 := c.backend(t, 2, "b2", 8081, 9090)
	client := probe(t, n3, n3.chain.AddPod(t, "client"))

	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.ServiceSpec{Ports: tcpPorts("http:80:web", "metrics:90:9090")}})
	c.putSlice(t, "app", "app-a", []slicePort{{"http", 8080}, {"metrics", 9090}}, readyEP(b1, n1))
	c.putSlice(t, "app", "app-b", []slicePort{{"http", 8081}, {"metrics", 9090}}, readyEP(b2, n2))
	within(t, start, "port http (named target, two slices)", exactly(t, client, clusterIP(svc, 80), "b1", "b2"))
	within(t, start, "port metrics", exactly(t, client, clusterIP(svc, 90), "b1", "b2"))

	// One slice gone: its endpoint leaves both ports.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start = time.Now()
	if err := c.cp.Client.DiscoveryV1().EndpointSlices(c.ns).Delete(ctx, "app-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, start, "a slice deleted (http)", exactly(t, client, clusterIP(svc, 80), "b2"))
	within(t, start, "a slice deleted (metrics)", exactly(t, client, clusterIP(svc, 90), "b2"))
}

// A NodePort Service answers at every node's IP: from a client outside the
// cluster (dsr), from a pod and from a node's own processes (sock-lb), on
// nodes with and without an endpoint.
func TestNodePort(t *testing.T) {
	c := newCluster(t, vxlanLB, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	b1 := c.backend(t, 1, "b1", 8080)
	b2 := c.backend(t, 2, "b2", 8080)
	pod := probe(t, n3, n3.chain.AddPod(t, "client"))
	host := n3.Probe(t, n3.NS)

	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: tcpPorts("http:80:8080")}})
	c.putSlice(t, "shop", "shop-1", []slicePort{{"http", 8080}}, readyEP(b1, n1), readyEP(b2, n2))
	np := uint16(svc.Spec.Ports[0].NodePort)
	for _, nd := range c.nodes {
		dst := netip.AddrPortFrom(nd.IP, np)
		within(t, start, "NodePort from outside via "+nd.Name, fromOutside(c, dst, "b1", "b2"))
		within(t, start, "NodePort from a pod via "+nd.Name, exactly(t, pod, dst, "b1", "b2"))
		within(t, start, "NodePort from node n3 via "+nd.Name, exactly(t, host, dst, "b1", "b2"))
	}
	within(t, start, "its ClusterIP from the node", exactly(t, host, clusterIP(svc, 80), "b1", "b2"))
}

// externalTrafficPolicy: Local: a node with an endpoint serves outside
// clients from it; a node without one gives them nothing (no hop to
// another node, the client's source stays visible).
func TestExternalTrafficPolicyLocal(t *testing.T) {
	c := newCluster(t, vxlanLB, 3)
	n1, n2 := c.nodes[0], c.nodes[1]
	b1 := c.backend(t, 1, "b1", 8080)

	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: tcpPorts("http:80:8080")}})
	c.putSlice(t, "local", "local-1", []slicePort{{"http", 8080}}, readyEP(b1, n1))
	np := uint16(svc.Spec.Ports[0].NodePort)
	within(t, start, "ETP Local via the endpoint's node", fromOutside(c, netip.AddrPortFrom(n1.IP, np), "b1"))
	within(t, start, "ETP Local via a node without endpoint", outsideUnanswered(c, netip.AddrPortFrom(n2.IP, np)))

	// The endpoint moves to n2: n2 answers, n1 no longer.
	b2 := c.backend(t, 2, "b2", 8080)
	start = time.Now()
	c.putSlice(t, "local", "local-1", []slicePort{{"http", 8080}}, readyEP(b2, n2))
	within(t, start, "ETP Local, endpoint moved: its new node", fromOutside(c, netip.AddrPortFrom(n2.IP, np), "b2"))
	within(t, start, "ETP Local, endpoint moved: its old node", outsideUnanswered(c, netip.AddrPortFrom(n1.IP, np)))

	// Back to Cluster: the node without an endpoint forwards again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := c.cp.Client.CoreV1().Services(c.ns).Get(ctx, "local", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	start = time.Now()
	if _, err := c.cp.Client.CoreV1().Services(c.ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, start, "ETP Cluster again: a node without endpoint", fromOutside(c, netip.AddrPortFrom(n1.IP, np), "b2"))
}

// fromOutside is a check that the outside client's connections to dst are
// answered by the named backends only, each at least once.
func fromOutside(c *cluster, dst netip.AddrPort, want ...string) func() error {
	return func() error {
		got := map[string]bool{}
		for range 3*len(want) + 3 {
			name, err := greet(c.client.NS, dst)
			if err != nil {
				return err
			}
			if !slices.Contains(want, name) {
				return fmt.Errorf("%s answered by %q, want %v", dst, name, want)
			}
			got[name] = true
		}
		if len(got) != len(want) {
			return fmt.Errorf("%s answered by %v only, want %v", dst, got, want)
		}
		return nil
	}
}

// outsideUnanswered is a check that no backend answers the outside
// client's connections to dst.
func outsideUnanswered(c *cluster, dst netip.AddrPort) func() error {
	return func() error {
		for range 2 {
			if name, err := greet(c.client.NS, dst); err == nil {
				return fmt.Errorf("%s answered by %q", dst, name)
			}
		}
		return nil
	}
}

// sessionAffinity: ClientIP: every connection of a client goes to one
// backend (the same Service without affinity spreads, as the tests above
// show); turned off again, connections spread.
func TestSessionAffinity(t *testing.T) {
	c := newCluster(t, vxlanLB, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	b1 := c.backend(t, 1, "b1", 8080)
	b2 := c.backend(t, 2, "b2", 8080)
	client := probe(t, n2, n2.chain.AddPod(t, "client"))

	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "sticky"},
		Spec: corev1.ServiceSpec{Ports: tcpPorts("http:80:8080"), SessionAffinity: corev1.ServiceAffinityClientIP}})
	c.putSlice(t, "sticky", "sticky-1", []slicePort{{"http", 8080}}, readyEP(b1, n1), readyEP(b2, n2))
	vip := clusterIP(svc, 80)
	within(t, start, "ClientIP affinity: one backend for every connection", func() error {
		got := answers(t, client, vip, 12)
		if len(got) != 1 || (got["b1"] != 12 && got["b2"] != 12) {
			return fmt.Errorf("%s answered %v, want one backend 12 times", vip, got)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := c.cp.Client.CoreV1().Services(c.ns).Get(ctx, "sticky", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.SessionAffinity, svc.Spec.SessionAffinityConfig = corev1.ServiceAffinityNone, nil
	start = time.Now()
	if _, err := c.cp.Client.CoreV1().Services(c.ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, start, "affinity off: connections spread", exactly(t, client, vip, "b1", "b2"))
}

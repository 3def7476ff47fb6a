package k8sstore

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Against a real kube-apiserver, as the ServiceAccount of the shipped
// manifest (its ClusterRole is the package comment's): the caches sync (so
// every list and watch is allowed, label selectors included), a Node, a
// selector-less Service and its hand-made slice become the view, a slice
// change follows, and the API server stopped and started turns Connected
// off and on, with a change made meanwhile arriving after.
func TestAPIServer(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.ApplyFile(ctx, filepath.Join("..", "..", "deploy", "kubernetes", "braid.yaml"), false); err != nil {
		t.Fatal(err)
	}
	tok, err := c.ServiceAccountToken(ctx, "kube-system", "braid")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := c.WriteKubeconfig(kubeconfig, c.Server(), tok); err != nil {
		t.Fatal(err)
	}

	admin := c.Client
	n := node("node-a", []string{"10.244.1.0/24"}, "")
	if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}}
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := admin.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sl := slice("web-1", map[string]int32{"http": 8080}, ep("10.244.1.5", "rs", "node-a"))
	sl.Namespace = "default"
	if sl, err = admin.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	d, err := New(Config{Kubeconfig: kubeconfig, NodeName: "node-a", Device: "eth0", Coalesce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	views := make(chan datastore.View, 100)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(rctx, func(v datastore.View) { views <- v }) }()
	defer func() { stop(); <-done }()

	v := waitView(t, views, "the Service", func(v datastore.View) bool { return backendsOf(v, "default.web.http") == "[10.244.1.5:8080]" })
	if e, _ := entryOf(v, "default.web.http"); e.VIP != netip.MustParseAddr(s.Spec.ClusterIP) ||
		v.Self.PodCIDR != netip.MustParsePrefix("10.244.1.0/24") || v.Self.NodeIP != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("view %+v", v)
	}
	if !d.Connected() {
		t.Error("not connected")
	}
	start := time.Now()
	sl.Endpoints = append(sl.Endpoints, ep("10.244.1.6", "rs", "node-a"))
	if sl, err = admin.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitView(t, views, "the new endpoint", func(v datastore.View) bool {
		return backendsOf(v, "default.web.http") == "[10.244.1.5:8080 10.244.1.6:8080]"
	})
	t.Logf("slice update to view: %s", time.Since(start))

	// The CLI's read, as the same ServiceAccount.
	svcs, err := d.Services(ctx)
	if err != nil || len(svcs) != 2 { // web and the API server's own "kubernetes"
		t.Errorf("Services: %+v, %v", svcs, err)
	}

	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for d.Connected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if d.Connected() {
		t.Fatal("connected 10s after the API server stopped")
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	sl.Endpoints = sl.Endpoints[:1]
	if _, err := admin.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case v := <-views:
			if backendsOf(v, "default.web.http") == "[10.244.1.5:8080]" {
				t.Logf("API server ready again to the change in the view: %s", time.Since(back))
				if !d.Connected() {
					t.Error("a view arrived, yet not connected")
				}
				return
			}
		case <-timeout:
			t.Fatal("the change made after the API server came back did not arrive within 60s")
		}
	}
}

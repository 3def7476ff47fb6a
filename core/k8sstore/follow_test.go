package k8sstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// follow runs a Datastore for node-a on client until the test ends; views
// arrive on the channel returned.
func follow(t *testing.T, client *fake.Clientset, translated func(string)) (*Datastore, <-chan datastore.View) {
	t.Helper()
	d, err := NewForClient(client, Config{NodeName: "node-a", Device: "eth0", Coalesce: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.onTranslate = translated
	views := make(chan datastore.View, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx, func(v datastore.View) { views <- v }) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, views
}

// waitView returns the first view ok accepts, failing after 5 s.
func waitView(t *testing.T, views <-chan datastore.View, what string, ok func(datastore.View) bool) datastore.View {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case v := <-views:
			if ok(v) {
				return v
			}
		case <-timeout:
			t.Fatalf("no view with %s within 5s", what)
		}
	}
}

func noView(t *testing.T, views <-chan datastore.View, d time.Duration) {
	t.Helper()
	select {
	case v := <-views:
		t.Fatalf("unexpected view %+v", v)
	case <-time.After(d):
	}
}

// quiet drains views until none came for 300ms.
func quiet(views <-chan datastore.View) {
	for {
		select {
		case <-views:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

func svcNamed(name, ip string) *corev1.Service {
	return svc(func(s *corev1.Service) { s.Name, s.Spec.ClusterIP, s.Spec.ClusterIPs = name, ip, []string{ip} })
}

func sliceOf(service, name string, addrs ...string) *discoveryv1.EndpointSlice {
	var eps []discoveryv1.Endpoint
	for _, a := range addrs {
		eps = append(eps, ep(a, "rs", ""))
	}
	s := slice(name, map[string]int32{"": 8080}, eps...)
	s.Labels[discoveryv1.LabelServiceName] = service
	return s
}

func entryOf(v datastore.View, name string) (store.Service, bool) {
	i := slices.IndexFunc(v.Services, func(s store.Service) bool { return s.Name == name })
	if i < 0 {
		return store.Service{}, false
	}
	return v.Services[i], true
}

func backendsOf(v datastore.View, name string) string {
	s, ok := entryOf(v, name)
	if !ok {
		return "none"
	}
	return fmt.Sprint(s.Backends)
}

// The informers end to end: no view until this node has its pod CIDR, then
// peers and Services follow the API server; a change to one slice
// translates that Service alone; a deleted Node leaves the view.
func TestFollow(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	var mu sync.Mutex
	translations := map[string]int{}
	d, views := follow(t, client, func(k string) { mu.Lock(); translations[k]++; mu.Unlock() })
	nodes, services, eps := client.CoreV1().Nodes(), client.CoreV1().Services("ns"), client.DiscoveryV1().EndpointSlices("ns")

	a := node("node-a", nil, "192.0.2.1")
	if _, err := nodes.Create(ctx, a, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.Create(ctx, node("node-b", []string{"10.244.2.0/24"}, "192.0.2.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	noView(t, views, 300*time.Millisecond)
	if why := d.NotReady(); why == "" {
		t.Error("not ready, and NotReady does not say why")
	}
	if !d.Connected() {
		t.Error("not connected after the caches synced")
	}

	a.Spec.PodCIDR, a.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24"}
	if _, err := nodes.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := waitView(t, views, "this node's pod CIDR", func(v datastore.View) bool { return v.Self.PodCIDR.IsValid() })
	want := store.Node{Name: "node-a", NodeIP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), Device: "eth0"}
	if v.Self != want || len(v.Peers) != 1 || v.Peers[0].Name != "node-b" || d.NotReady() != "" {
		t.Fatalf("view %+v, not ready %q", v, d.NotReady())
	}

	// Two Services: web with two slices (one endpoint in both), api with
	// one; both selector-less, their slices made by hand.
	for _, s := range []*corev1.Service{svcNamed("web", "10.96.0.10"), svcNamed("api", "10.96.0.11")} {
		if _, err := services.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*discoveryv1.EndpointSlice{
		sliceOf("web", "web-1", "10.244.2.5", "10.244.2.6"),
		sliceOf("web", "web-2", "10.244.2.6", "10.244.1.7"),
		sliceOf("api", "api-1", "10.244.2.9"),
	} {
		if _, err := eps.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	v = waitView(t, views, "both services, every slice", func(v datastore.View) bool {
		return backendsOf(v, "ns.web.80") == "[10.244.1.7:8080 10.244.2.5:8080 10.244.2.6:8080]" &&
			backendsOf(v, "ns.api.80") == "[10.244.2.9:8080]"
	})
	api, _ := entryOf(v, "ns.api.80")
	quiet(views) // events the caches showed before their handlers ran

	// One slice of web changes: web is translated again, api is not.
	mu.Lock()
	clear(translations)
	mu.Unlock()
	if _, err := eps.Update(ctx, sliceOf("web", "web-2", "10.244.1.8"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	v = waitView(t, views, "web's new slice", func(v datastore.View) bool {
		return backendsOf(v, "ns.web.80") == "[10.244.1.8:8080 10.244.2.5:8080 10.244.2.6:8080]"
	})
	mu.Lock()
	if translations["ns/web"] == 0 || translations["ns/api"] != 0 {
		t.Errorf("translations after one slice of web changed: %v", translations)
	}
	mu.Unlock()
	if got, _ := entryOf(v, "ns.api.80"); fmt.Sprint(got) != fmt.Sprint(api) {
		t.Errorf("api changed: %+v, was %+v", got, api)
	}

	// A burst of changes is one view (or a few), not one per change.
	for i := range 20 {
		s := sliceOf("api", fmt.Sprintf("api-burst-%d", i), fmt.Sprintf("10.244.3.%d", i+1))
		if _, err := eps.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitView(t, views, "the burst", func(v datastore.View) bool {
		s, _ := entryOf(v, "ns.api.80")
		return len(s.Backends) == 21
	})
	if n := len(views); n > 0 {
		t.Logf("%d more views queued after the burst", n)
	}

	// The Service deleted: its entries go.
	if err := services.Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitView(t, views, "api gone", func(v datastore.View) bool { _, ok := entryOf(v, "ns.api.80"); return !ok })

	// node-b deleted: the peer goes.
	if err := nodes.Delete(ctx, "node-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitView(t, views, "no peer", func(v datastore.View) bool { return len(v.Peers) == 0 })
}

// A burst of events gives one view per coalescing window, not one per
// event.
func TestBurstIsOneView(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(node("node-a", []string{"10.244.1.0/24"}, "192.0.2.1"))
	const window = 500 * time.Millisecond
	d, err := NewForClient(client, Config{NodeName: "node-a", Coalesce: window})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var last atomic.Pointer[datastore.View]
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(rctx, func(v datastore.View) { n.Add(1); last.Store(&v) })
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	for i := range 50 {
		if _, err := client.CoreV1().Services("ns").Create(ctx, svcNamed(fmt.Sprintf("s%d", i), fmt.Sprintf("10.96.1.%d", i+1)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	for (last.Load() == nil || len(last.Load().Services) < 50) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * window) // any view still to come
	// The creates span took/window windows at most, and each window
	// gives one view.
	if got, most := n.Load()-1, int32(took/window)+1; got > most || len(last.Load().Services) != 50 {
		t.Errorf("50 Services created in %s gave %d views (at most %d with a %s window), %d services", took, got, most, window, len(last.Load().Services))
	}
}

// The API server unreachable: Connected turns false, no view is applied
// (the node keeps its last); reachable again: Connected, and changes made
// meanwhile arrive.
func TestConnected(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(node("node-a", []string{"10.244.1.0/24"}, "192.0.2.1"))
	var down atomic.Bool
	var mu sync.Mutex
	var watches []*watch.FakeWatcher
	refused := fmt.Errorf("dial tcp 127.0.0.1:6443: %w", syscall.ECONNREFUSED)
	client.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, refused
		}
		return false, nil, nil
	})
	client.PrependWatchReactor("services", func(k8stesting.Action) (bool, watch.Interface, error) {
		if down.Load() {
			return true, nil, refused
		}
		w := watch.NewFake()
		mu.Lock()
		watches = append(watches, w)
		mu.Unlock()
		return true, w, nil
	})
	d, views := follow(t, client, nil)
	waitView(t, views, "a first view", func(datastore.View) bool { return true })
	if !d.Connected() {
		t.Fatal("not connected")
	}
	down.Store(true)
	mu.Lock()
	for _, w := range watches {
		w.Stop() // the API server goes away: its watches end
	}
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for d.Connected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d.Connected() {
		t.Fatal("still connected 5s after the API server went away")
	}
	noView(t, views, 200*time.Millisecond)

	// Back: a relist or a new watch succeeds.
	if _, err := client.CoreV1().Services("ns").Create(ctx, svcNamed("web", "10.96.0.10"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	deadline = time.Now().Add(10 * time.Second)
	for !d.Connected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !d.Connected() {
		t.Fatal("not connected 10s after the API server came back")
	}
	// The reflector resumes its watch from where it was, and so misses
	// what the fake did meanwhile; a real API server replays it. So this
	// test does not wait for web.
}

// The CLI's side: reads through the API, changes refused with the reason.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	b := node("node-b", []string{"10.244.2.0/24"}, "192.0.2.2")
	b.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	client := fake.NewClientset(node("node-a", []string{"10.244.1.0/24"}, "192.0.2.1"), b,
		svc(func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal) }),
		sliceOf("web", "web-1", "10.244.1.5", "10.244.2.5"))
	d, err := NewForClient(client, Config{NodeName: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := d.Nodes(ctx)
	if err != nil || len(nodes) != 2 || !nodes[0].Self || nodes[0].Up || !nodes[1].Up || nodes[1].PodCIDR.String() != "10.244.2.0/24" {
		t.Errorf("nodes %+v, %v", nodes, err)
	}
	svcs, err := d.Services(ctx)
	if err != nil || len(svcs) != 1 || fmt.Sprint(svcs[0].Backends) != "[10.244.1.5:8080]" {
		t.Errorf("services as node-a enforces them: %+v, %v", svcs, err)
	}
	if err := d.PutServices(ctx, store.Service{}); !errors.Is(err, datastore.ErrReadOnly) || !containsAll(err.Error(), "Services are changed with kubectl") {
		t.Errorf("put services: %v", err)
	}
	if _, err := d.DeleteService(ctx, "x"); !errors.Is(err, datastore.ErrReadOnly) {
		t.Errorf("delete service: %v", err)
	}
	if err := d.UpdateService(ctx, "x", nil); !errors.Is(err, datastore.ErrReadOnly) {
		t.Errorf("update service: %v", err)
	}
	if err := d.PutNode(ctx, store.Peer{}); !errors.Is(err, datastore.ErrReadOnly) || !containsAll(err.Error(), "nodes join by running the kubelet") {
		t.Errorf("put node: %v", err)
	}
	if _, err := d.DeleteNode(ctx, "node-b"); !errors.Is(err, datastore.ErrReadOnly) {
		t.Errorf("delete node: %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

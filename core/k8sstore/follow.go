package k8sstore

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// connState is whether the API server answers: the informers' last list
// or watch call succeeded, and so did the last /readyz probe since. The
// informers' reflectors retry a refused watch by themselves without
// telling anyone (client-go calls the watch error handler only when a list
// fails or a watch ends badly), so the calls themselves are observed; and
// a watch call still open, or retrying a handshake inside client-go, says
// nothing for minutes after the server is gone, which the probe notices.
type connState struct {
	ok     atomic.Bool // the last list or watch call succeeded
	probed atomic.Bool // no probe has failed since the last answer
	log    func(up bool, err error)
}

func (c *connState) up() bool { return c.ok.Load() && c.probed.Load() }

// set records a list or watch call; one that succeeds is an answer too.
func (c *connState) set(up bool, err error) {
	was := c.up()
	c.ok.Store(up)
	if up {
		c.probed.Store(true)
	}
	c.logChange(was, err)
}

// probe records a /readyz probe.
func (c *connState) probe(err error) {
	was := c.up()
	c.probed.Store(err == nil)
	c.logChange(was, err)
}

func (c *connState) logChange(was bool, err error) {
	if now := c.up(); now != was && c.log != nil {
		c.log(now, err)
	}
}

// listWatch is the informer's list and watch calls, observed.
func (c *connState) listWatch(client any,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.ListerWatcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			if ctx.Err() == nil {
				c.set(err == nil, err)
			}
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			if ctx.Err() == nil {
				c.set(err == nil, err)
			}
			return w, err
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, client)
}

// serviceIndex indexes slices by their Service's key (namespace/name).
const serviceIndex = "service"

func sliceService(obj any) ([]string, error) {
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
		return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
	}
	return nil, nil
}

// translated is one Service's part of the view.
type translated struct {
	entries  []store.Service
	problems []string
}

// follower is one Run: the informers, what changed since the last view,
// and each Service's entries as last translated.
type follower struct {
	d                       *Datastore
	nodes, services, slices cache.SharedIndexInformer
	kick                    chan struct{}

	mu         sync.Mutex
	dirty      map[string]bool // Services to translate again
	nodesDirty bool

	// The loop's own.
	byService map[string]translated
	nodeView  Nodes
	local     Local
	last      *datastore.View
}

// Run follows the API server until ctx ends: it waits for the informers'
// caches, then applies a view after every burst of changes (only when this
// node has its pod CIDR, and only a view that differs from the last). An
// informer event for one Service or slice translates that Service again,
// not the others.
func (d *Datastore) Run(ctx context.Context, apply func(datastore.View)) {
	if d.cfg.NodeName == "" {
		why := "no node name (--name, or NODE_NAME)"
		d.notReady.Store(&why)
		d.cfg.Log.Error("the kubernetes datastore needs this node's name: no view applied", "why", why)
		<-ctx.Done()
		return
	}
	f := d.newFollower()
	d.conn.log = func(up bool, err error) {
		if up {
			d.cfg.Log.Info("kubernetes API server reachable")
		} else {
			d.cfg.Log.Warn("kubernetes API server unreachable; the node keeps its last view", "err", err)
		}
	}
	for _, inf := range []cache.SharedIndexInformer{f.nodes, f.services, f.slices} {
		go inf.RunWithContext(ctx)
	}
	go d.probe(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), f.nodes.HasSynced, f.services.HasSynced, f.slices.HasSynced) {
		return
	}
	d.cfg.Log.Info("kubernetes caches synced", "nodes", len(f.nodes.GetIndexer().ListKeys()),
		"services", len(f.services.GetIndexer().ListKeys()), "endpointslices", len(f.slices.GetIndexer().ListKeys()))
	f.signal()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		}
		select { // let a burst of events fold into one view
		case <-ctx.Done():
			return
		case <-time.After(d.cfg.Coalesce):
		}
		if v := f.refresh(); v != nil {
			apply(*v)
		}
	}
}

// probeInterval is how often Run asks the API server whether it is ready,
// and how long an answer may take.
const probeInterval = 3 * time.Second

// probe asks the API server's /readyz (open to every client, as
// system:public-info-viewer) on every interval, until ctx ends (connState
// says why). A client without a REST client (the fake one in tests) is
// not probed.
func (d *Datastore) probe(ctx context.Context) {
	rc := d.client.Discovery().RESTClient()
	if p, ok := rc.(*rest.RESTClient); rc == nil || ok && p == nil {
		return
	}
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, probeInterval)
		err := rc.Get().AbsPath("/readyz").Do(pctx).Error()
		cancel()
		if ctx.Err() != nil {
			return
		}
		d.conn.probe(err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (d *Datastore) newFollower() *follower {
	c := d.client
	f := &follower{d: d, kick: make(chan struct{}, 1), dirty: map[string]bool{}, nodesDirty: true,
		byService: map[string]translated{}}
	f.nodes = cache.NewSharedIndexInformer(d.conn.listWatch(c,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Nodes().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Nodes().Watch(ctx, o)
		}), &corev1.Node{}, 0, cache.Indexers{})
	f.services = cache.NewSharedIndexInformer(d.conn.listWatch(c,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = serviceSelector
			return c.CoreV1().Services("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = serviceSelector
			return c.CoreV1().Services("").Watch(ctx, o)
		}), &corev1.Service{}, 0, cache.Indexers{})
	f.slices = cache.NewSharedIndexInformer(d.conn.listWatch(c,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sliceSelector
			return c.DiscoveryV1().EndpointSlices("").List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sliceSelector
			return c.DiscoveryV1().EndpointSlices("").Watch(ctx, o)
		}), &discoveryv1.EndpointSlice{}, 0, cache.Indexers{serviceIndex: sliceService})
	for _, inf := range []cache.SharedIndexInformer{f.nodes, f.services, f.slices} {
		_ = inf.SetTransform(trim)
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			d.conn.set(false, err)
		})
	}
	_, _ = f.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { f.markNodes() },
		UpdateFunc: func(any, any) { f.markNodes() },
		DeleteFunc: func(any) { f.markNodes() },
	})
	_, _ = f.services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.markService(o) },
		UpdateFunc: func(_, o any) { f.markService(o) },
		DeleteFunc: func(o any) { f.markService(o) },
	})
	_, _ = f.slices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { f.markSlice(o) },
		UpdateFunc: func(old, o any) { f.markSlice(old); f.markSlice(o) },
		DeleteFunc: func(o any) { f.markSlice(o) },
	})
	return f
}

// trim keeps what braid reads of an object: the informers' caches hold
// every Node and Service of the cluster, and a Node's status (images,
// volumes) and every object's managed fields are most of its size.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Node:
		n := &corev1.Node{ObjectMeta: o.ObjectMeta, Spec: corev1.NodeSpec{PodCIDR: o.Spec.PodCIDR, PodCIDRs: o.Spec.PodCIDRs}}
		n.Status.Addresses, n.Status.Conditions = o.Status.Addresses, o.Status.Conditions
		n.ManagedFields, n.Annotations = nil, nil
		return n, nil
	case metav1.Object:
		o.SetManagedFields(nil)
		o.SetAnnotations(nil)
	}
	return obj, nil
}

func (f *follower) signal() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *follower) markNodes() {
	f.mu.Lock()
	f.nodesDirty = true
	f.mu.Unlock()
	f.signal()
}

func (f *follower) markService(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		f.markKey(key)
	}
}

func (f *follower) markSlice(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	keys, _ := sliceService(obj)
	for _, k := range keys {
		f.markKey(k)
	}
}

func (f *follower) markKey(key string) {
	f.mu.Lock()
	f.dirty[key] = true
	f.mu.Unlock()
	f.signal()
}

// refresh translates what changed and returns the view to apply, or nil:
// this node is not ready, or nothing changed.
func (f *follower) refresh() *datastore.View {
	f.mu.Lock()
	dirty, nodesDirty := f.dirty, f.nodesDirty
	f.dirty, f.nodesDirty = map[string]bool{}, false
	f.mu.Unlock()
	if nodesDirty {
		var nodes []*corev1.Node
		for _, o := range f.nodes.GetIndexer().List() {
			nodes = append(nodes, o.(*corev1.Node))
		}
		cfg := f.d.cfg
		f.nodeView = NodeView(nodes, store.Node{Name: cfg.NodeName, NodeIP: cfg.NodeIP, Device: cfg.Device})
		local := Local{Name: cfg.NodeName, PodCIDR: f.nodeView.Self.PodCIDR, NodeIP: f.nodeView.Self.NodeIP}
		if local != f.local { // which endpoints are this node's changed: every Service again
			f.local = local
			for k := range f.byService {
				dirty[k] = true
			}
			for _, k := range f.services.GetIndexer().ListKeys() {
				dirty[k] = true
			}
		}
	}
	for key := range dirty {
		f.translate(key)
	}
	if why := f.nodeView.NotReady; why != "" {
		if old := f.d.NotReady(); old != why {
			f.d.cfg.Log.Warn("this node is not ready: no view applied", "why", why)
		}
		f.d.notReady.Store(&why)
		return nil
	}
	none := ""
	f.d.notReady.Store(&none)
	v := f.view()
	if f.last != nil && reflect.DeepEqual(*f.last, v) {
		return nil
	}
	f.last = &v
	return &v
}

// translate makes the Service with key's entries again.
func (f *follower) translate(key string) {
	if h := f.d.onTranslate; h != nil {
		h(key)
	}
	obj, exists, err := f.services.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		delete(f.byService, key)
		return
	}
	var eps []*discoveryv1.EndpointSlice
	objs, _ := f.slices.GetIndexer().ByIndex(serviceIndex, key)
	for _, o := range objs {
		eps = append(eps, o.(*discoveryv1.EndpointSlice))
	}
	// Slices in a fixed order: which of two copies of an endpoint wins
	// must not depend on the cache's.
	slices.SortFunc(eps, func(a, b *discoveryv1.EndpointSlice) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	entries, problems := ServiceEntries(obj.(*corev1.Service), eps, f.local)
	f.byService[key] = translated{entries, problems}
}

// view is the nodes and every Service's entries, as the node store takes
// them (store.Admit: valid, no address or node port twice, within the
// maps' capacity); what is left out is a problem.
func (f *follower) view() datastore.View {
	keys := make([]string, 0, len(f.byService))
	n := 0
	for k, t := range f.byService {
		keys = append(keys, k)
		n += len(t.entries)
	}
	slices.Sort(keys)
	all := make([]store.Service, 0, n)
	problems := slices.Clone(f.nodeView.Problems)
	for _, k := range keys {
		t := f.byService[k]
		all = append(all, t.entries...)
		problems = append(problems, t.problems...)
	}
	ok, skipped := store.Admit(all)
	if ok == nil {
		ok = []store.Service{}
	}
	return datastore.View{
		Self: f.nodeView.Self, Peers: f.nodeView.Peers, Services: ok,
		Problems: append(problems, skipped...),
	}
}

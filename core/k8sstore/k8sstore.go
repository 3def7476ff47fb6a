// Package k8sstore is braid's Kubernetes datastore (`braid agent
// --datastore kubernetes`): the API server's Nodes, Services and
// EndpointSlices (discovery.k8s.io/v1), followed with client-go shared
// informers, become the view a node enforces (datastore.Source), and the
// CLI reads the same through datastore.Cluster. It writes nothing to the
// API server: Services are changed with kubectl, nodes join by running the
// kubelet.
//
// RBAC: the agent's (and the CLI's) ServiceAccount needs exactly this, read
// only, cluster-wide:
//
//	apiGroups: [""]                  resources: [nodes, services]  verbs: [get, list, watch]
//	apiGroups: [discovery.k8s.io]    resources: [endpointslices]   verbs: [get, list, watch]
//
// (list and watch for the informers; get for `braid` reading this node's
// Node.)
//
// How a Service becomes braid services is in ServiceEntries (pure, and
// table-tested); docs/architecture.md has the mapping and the naming.
package k8sstore

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Label selectors of what braid follows, as kube-proxy's: a Service
// labelled service.kubernetes.io/service-proxy-name is another proxy's;
// slices of headless Services (labelled so by the EndpointSlice
// controller) are nobody's.
const (
	labelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	serviceSelector       = "!" + labelServiceProxyName
	sliceSelector         = discoveryv1.LabelServiceName + ",!" + corev1.IsHeadlessService + ",!" + labelServiceProxyName
)

// Config is a Kubernetes datastore's configuration.
type Config struct {
	// Kubeconfig is the kubeconfig file; empty: the in-cluster config
	// (the pod's ServiceAccount, KUBERNETES_SERVICE_HOST/PORT).
	Kubeconfig string
	// NodeName is this node's Node (`--name`, NODE_NAME in a DaemonSet).
	// The agent needs it (Run applies no view without it); the CLI reads
	// without it (then no endpoint is this node's).
	NodeName string
	// NodeIP, when valid, overrides the Node's InternalIP (`--node-ip`).
	NodeIP netip.Addr
	// Device is this node's device facing the underlay, kept in the view.
	Device string
	// Coalesce is how long a change waits for more before a view is
	// computed (default 20ms): a burst of events gives one view.
	Coalesce time.Duration
	Log      *slog.Logger
}

// Datastore is the Kubernetes API server as braid's datastore: a
// datastore.Source for the agent and a datastore.Cluster for the CLI.
type Datastore struct {
	cfg    Config
	client kubernetes.Interface
	conn   connState
	// notReady is why no view is applied yet ("" once one is).
	notReady atomic.Pointer[string]
	// onTranslate, in tests, sees each Service translated.
	onTranslate func(key string)
}

var (
	_ datastore.Source  = (*Datastore)(nil)
	_ datastore.Cluster = (*Datastore)(nil)
)

// New connects to the API server that cfg.Kubeconfig (or the in-cluster
// config) names. It does not wait for it: calls and Run wait or fail
// until it answers.
func New(cfg Config) (*Datastore, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	rc = rest.AddUserAgent(rc, "braid")
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return NewForClient(client, cfg)
}

// NewForClient is New with a client already made (a fake one in tests).
func NewForClient(client kubernetes.Interface, cfg Config) (*Datastore, error) {
	if cfg.NodeIP.IsValid() && !cfg.NodeIP.Is4() {
		return nil, fmt.Errorf("node IP %s is not an IPv4 address", cfg.NodeIP)
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 20 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d := &Datastore{cfg: cfg, client: client}
	d.conn.probed.Store(true)
	why := "caches not synced yet"
	d.notReady.Store(&why)
	return d, nil
}

// Connected reports whether the API server answers (connState).
func (d *Datastore) Connected() bool { return d.conn.up() }

// NotReady says why the agent has no view to apply yet ("" once it has):
// no Node for this node, no pod CIDR on it yet, caches not synced.
func (d *Datastore) NotReady() string { return *d.notReady.Load() }

// Errors of the changes the API server's users make with kubectl.
var (
	errServicesReadOnly = fmt.Errorf("%w: Services are changed with kubectl (kubectl apply / edit / delete service)", datastore.ErrReadOnly)
	errNodesReadOnly    = fmt.Errorf("%w: nodes join by running the kubelet, and leave with kubectl delete node", datastore.ErrReadOnly)
)

// Nodes lists every Node, as `braid node list` shows them.
func (d *Datastore) Nodes(ctx context.Context) ([]datastore.NodeInfo, error) {
	list, err := d.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodeInfos(ptrs(list.Items), d.cfg.NodeName), nil
}

// Services are the braid services this node enforces, read from the API
// server now (not from a running agent).
func (d *Datastore) Services(ctx context.Context) ([]store.Service, error) {
	svcs, err := d.client.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: serviceSelector})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	sl, err := d.client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: sliceSelector})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices: %w", err)
	}
	self := Local{Name: d.cfg.NodeName, NodeIP: d.cfg.NodeIP}
	n, err := d.client.CoreV1().Nodes().Get(ctx, d.cfg.NodeName, metav1.GetOptions{})
	switch {
	case err == nil:
		nv := NodeView([]*corev1.Node{n}, store.Node{Name: d.cfg.NodeName, NodeIP: d.cfg.NodeIP})
		self.PodCIDR, self.NodeIP = nv.Self.PodCIDR, nv.Self.NodeIP
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get node %s: %w", d.cfg.NodeName, err)
	}
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for i := range sl.Items {
		s := &sl.Items[i]
		k := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		bySvc[k] = append(bySvc[k], s)
	}
	var all []store.Service
	for i := range svcs.Items {
		s := &svcs.Items[i]
		e, _ := ServiceEntries(s, bySvc[s.Namespace+"/"+s.Name], self)
		all = append(all, e...)
	}
	ok, _ := store.Admit(all)
	return ok, nil
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// PutNode is refused: nodes join by running the kubelet.
func (d *Datastore) PutNode(context.Context, store.Peer) error { return errNodesReadOnly }

// DeleteNode is refused: kubectl delete node.
func (d *Datastore) DeleteNode(context.Context, string) (bool, error) {
	return false, errNodesReadOnly
}

// PutServices is refused: Services are changed with kubectl.
func (d *Datastore) PutServices(context.Context, ...store.Service) error {
	return errServicesReadOnly
}

// UpdateService is refused: Services are changed with kubectl.
func (d *Datastore) UpdateService(context.Context, string, func(*store.Service) error) error {
	return errServicesReadOnly
}

// DeleteService is refused: Services are changed with kubectl.
func (d *Datastore) DeleteService(context.Context, string) (bool, error) {
	return false, errServicesReadOnly
}

// Close releases nothing: the client holds no connection to close.
func (d *Datastore) Close() error { return nil }

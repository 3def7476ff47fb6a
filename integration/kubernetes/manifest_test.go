package kubernetes

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The one manifest is what a cluster accepts: every object passes the API
// server's strict validation and admission (a dry-run create of each, as
// kubectl apply --validate=strict --dry-run=server), and it is the
// kube-proxy-free install issue 16 asks for: no etcd, the agent in
// kubernetes mode on the host network, its node name from the downward
// API, only flags `braid agent` knows.
func TestManifest(t *testing.T) {
	cp := controlPlane(t)
	objs := manifest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cp.Apply(ctx, objs, true); err != nil {
		t.Fatalf("the API server refuses braid.yaml: %v", err)
	}

	var kinds []string
	var ds *appsv1.DaemonSet
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetKind() == "DaemonSet" {
			ds = new(appsv1.DaemonSet)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("braid.yaml has no %s (it has %v)", k, kinds)
		}
	}
	if ds == nil {
		t.FailNow()
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.ServiceAccountName != "braid" || len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Errorf("DaemonSet: hostNetwork %v, serviceAccount %q, %d init containers, %d containers; want host network, braid, 1, 1",
			spec.HostNetwork, spec.ServiceAccountName, len(spec.InitContainers), len(spec.Containers))
	}
	agent := spec.Containers[0]
	if sc := agent.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("the agent container is not privileged")
	}
	if len(agent.Args) == 0 || agent.Args[0] != "agent" || !slices.Contains(agent.Args, "--datastore=kubernetes") {
		t.Errorf("agent args %q: want `agent … --datastore=kubernetes`", agent.Args)
	}
	nodeName := false
	for _, e := range agent.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Error("the agent's NODE_NAME does not come from spec.nodeName")
	}
	for _, a := range append(slices.Clone(agent.Args), agent.Command...) {
		if strings.Contains(a, "etcd") {
			t.Errorf("the agent still uses etcd: %q", a)
		}
	}

	// Every flag the manifest passes is one `braid agent` defines.
	out, _ := exec.Command(harness.RepoBinary(t, "braid"), "agent", "--help").CombinedOutput()
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if len(known) == 0 {
		t.Fatalf("no flags in `braid agent --help`: %s", out)
	}
	for _, a := range agent.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !known[name] {
			t.Errorf("braid agent has no flag %q (it has %v)", a, known)
		}
	}
}

// The ClusterRole the manifest ships gives the agent what it follows
// (get, list and watch of Nodes, Services and EndpointSlices) and nothing
// else: a ServiceAccount token bound to it is refused any write and any
// Secret.
func TestManifestRBAC(t *testing.T) {
	cp := controlPlane(t)
	kc := filepath.Join(t.TempDir(), "braid.kubeconfig")
	agentKubeconfig(t, cp, kc, cp.Server())
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	reads := map[string]func() error{
		"list nodes":    func() error { _, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err },
		"list services": func() error { _, err := sa.CoreV1().Services("").List(ctx, metav1.ListOptions{}); return err },
		"list endpointslices": func() error {
			_, err := sa.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return err
		},
		// Not found (not forbidden): the server checked the verb first.
		"get service": func() error {
			_, err := sa.CoreV1().Services("default").Get(ctx, "absent", metav1.GetOptions{})
			return notFoundIsFine(err)
		},
		"get node": func() error {
			_, err := sa.CoreV1().Nodes().Get(ctx, "absent", metav1.GetOptions{})
			return notFoundIsFine(err)
		},
		"get endpointslice": func() error {
			_, err := sa.DiscoveryV1().EndpointSlices("default").Get(ctx, "absent", metav1.GetOptions{})
			return notFoundIsFine(err)
		},
		"watch nodes": func() error {
			w, err := sa.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"watch services": func() error {
			w, err := sa.CoreV1().Services("").Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"watch endpointslices": func() error {
			w, err := sa.DiscoveryV1().EndpointSlices("").Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
	}
	// At once: a fresh API server answers a watch only after seconds.
	var wg sync.WaitGroup
	for what, fn := range reads {
		wg.Go(func() {
			if err := fn(); err != nil {
				t.Errorf("the agent's ServiceAccount cannot %s: %v", what, err)
			}
		})
	}
	wg.Wait()
	denied := map[string]func() error{
		"delete a service": func() error {
			return sa.CoreV1().Services("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		},
		"delete a node": func() error {
			return sa.CoreV1().Nodes().Delete(ctx, "none", metav1.DeleteOptions{})
		},
		"list secrets": func() error { _, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err },
		"list pods":    func() error { _, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err },
	}
	for what, fn := range denied {
		if err := fn(); !apierrors.IsForbidden(err) {
			t.Errorf("the agent's ServiceAccount may %s: %v, want forbidden", what, err)
		}
	}
}

func notFoundIsFine(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Package kubernetes is braid's suite against the real thing: a real
// kube-apiserver (with etcd, token auth and RBAC, internal/kubetest) that
// the one manifest, deploy/kubernetes/braid.yaml, is applied to, and netns
// nodes (integration/harness) whose agents follow it with `--datastore
// kubernetes` as the manifest's ServiceAccount, while the tests write Nodes,
// Services and EndpointSlices with client-go and check real traffic after
// each change.
//
// One control plane serves the whole suite (it starts in seconds, but
// seconds per test add up); tests stay independent by using their own
// namespaces and object names.
package kubernetes

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	"github.com/braid-cni/braid/internal/kubetest"
	"github.com/braid-cni/braid/internal/sockprobe"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// serviceCIDR is the control plane's --service-cluster-ip-range: ClusterIPs
// inside the harness's 198.18.0.0/15, so that no test address leaves it.
const serviceCIDR = "198.18.128.0/20"

var shared struct {
	once sync.Once
	cp   *kubetest.Cluster
	err  error
}

func TestMain(m *testing.M) {
	sockprobe.Main() // a probe process (harness.Node.Probe) is this binary
	code := m.Run()
	if shared.cp != nil {
		if err := shared.cp.Close(); err != nil {
			println("stop the control plane:", err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

// controlPlane is the suite's API server, started by the first test that
// needs it, with the manifest's ServiceAccount and RBAC applied.
func controlPlane(t *testing.T) *kubetest.Cluster {
	t.Helper()
	kubetest.RequireBinaries(t, "kube-apiserver")
	shared.once.Do(func() {
		var dir string
		if dir, shared.err = os.MkdirTemp("", "braid-kubernetes-"); shared.err != nil {
			return
		}
		if shared.cp, shared.err = kubetest.Start(dir, kubetest.Options{ServiceCIDR: serviceCIDR}); shared.err != nil {
			return
		}
		shared.err = installRBAC(shared.cp)
	})
	if shared.err != nil {
		t.Fatalf("control plane: %v", shared.err)
	}
	return shared.cp
}

// manifest is the one manifest, decoded.
func manifest(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	repo, err := harness.Repo()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "kubernetes", "braid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubetest.Objects(b)
	if err != nil {
		t.Fatalf("braid.yaml: %v", err)
	}
	return objs
}

// rbacKinds are the manifest's objects the suite creates for real: the
// agents run as its ServiceAccount, so the ClusterRole's rules are the ones
// tested. (The DaemonSet is only validated: no kubelet runs its pods.)
var rbacKinds = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}

func installRBAC(cp *kubetest.Cluster) error {
	repo, err := harness.Repo()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "kubernetes", "braid.yaml"))
	if err != nil {
		return err
	}
	objs, err := kubetest.Objects(b)
	if err != nil {
		return err
	}
	objs = slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool { return !slices.Contains(rbacKinds, o.GetKind()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cp.Apply(ctx, objs, false)
}

// agentKubeconfig writes a kubeconfig for the manifest's ServiceAccount
// (kube-system/braid, a TokenRequest token) pointing at server.
func agentKubeconfig(t *testing.T, cp *kubetest.Cluster, path, server string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := cp.ServiceAccountToken(ctx, "kube-system", "braid")
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.WriteKubeconfig(path, server, tok); err != nil {
		t.Fatal(err)
	}
}

// namespace creates a namespace for t (deleted when it ends).
//
//lint:ignore U1000 for the suites that come with the Kubernetes datastore
func namespace(t *testing.T, cp *kubetest.Cluster, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cp.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

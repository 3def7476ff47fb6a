package kubetest

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The control plane is a real one: a Service gets a ClusterIP from the
// range, a ServiceAccount's kubeconfig is held to its RBAC, objects outlive
// an API server restart, and a Proxy reaches the server.
func TestControlPlane(t *testing.T) {
	c := New(t, Options{ServiceCIDR: "10.97.0.0/16"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	svc, err := c.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !netip.MustParsePrefix("10.97.0.0/16").Contains(ip) {
		t.Fatalf("ClusterIP %q is not from the service range", svc.Spec.ClusterIP)
	}

	// A ServiceAccount allowed to list and watch Services, nothing else.
	if _, err := c.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: "default"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.ServiceAccountToken(ctx, "default", "reader")
	if err != nil {
		t.Fatal(err)
	}
	// Through a Proxy, as an agent in another netns reaches it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := c.Proxy(l)
	defer stop()
	kc := filepath.Join(t.TempDir(), "reader.kubeconfig")
	if err := c.WriteKubeconfig(kc, "https://"+l.Addr().String(), tok); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	reader := kubernetes.NewForConfigOrDie(cfg)
	if l, err := reader.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); err != nil || !slices.ContainsFunc(l.Items, func(s corev1.Service) bool { return s.Name == "web" }) {
		t.Fatalf("the reader lists services: %v (%v, want web among them)", err, l)
	}
	if _, err := reader.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the reader lists nodes: %v, want forbidden", err)
	}

	// A watch through the proxy ends when the API server goes, and
	// nothing answers through it until it is back.
	w, err := reader.CoreV1().Services("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// (A watch from no resourceVersion begins with the existing objects.)
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-w.ResultChan():
		case <-timeout:
			t.Fatal("a watch through the proxy outlives the API server by 5s")
		}
	}
	if _, err := c.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{}); err == nil {
		t.Fatal("the API server answers while stopped")
	}
	if _, err := reader.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("the API server answers through the proxy while stopped")
	}
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{}); err != nil || got.Spec.ClusterIP != svc.Spec.ClusterIP {
		t.Fatalf("after a restart: %v, %+v", err, got)
	}
}

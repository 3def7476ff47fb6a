package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WriteKubeconfig writes a kubeconfig for server (an https URL: the
// loopback Server, or an address a Proxy forwards) with a bearer token.
func (c *Cluster) WriteKubeconfig(path, server, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "user"}
	cfg.CurrentContext = "kubetest"
	return clientcmd.WriteToFile(*cfg, path)
}

// AdminKubeconfig writes a kubeconfig with the admin's (system:masters)
// token.
func (c *Cluster) AdminKubeconfig(path, server string) error {
	return c.WriteKubeconfig(path, server, c.token)
}

// ServiceAccountToken is a token for namespace/name made with the
// TokenRequest API, as a pod's projected token is (valid for an hour).
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for serviceaccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// Objects decodes a multi-document YAML manifest.
func Objects(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(objs)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// Apply creates each object (or replaces it when it exists) as the admin,
// with strict server-side field validation: an unknown or misplaced field
// fails as kubectl apply --validate=strict would. With dryRun the server
// checks everything (admission included) and stores nothing.
func (c *Cluster) Apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) error {
	groups, err := restmapper.GetAPIGroupResources(c.Client.Discovery())
	if err != nil {
		return err
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	var dry []string
	if dryRun {
		dry = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk, o.GetName(), err)
		}
		r := c.Dyn.Resource(m.Resource)
		var ri interface {
			Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error)
			Get(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)
			Update(context.Context, *unstructured.Unstructured, metav1.UpdateOptions, ...string) (*unstructured.Unstructured, error)
		} = r
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := o.GetNamespace()
			if ns == "" {
				ns = metav1.NamespaceDefault
			}
			ri = r.Namespace(ns)
		}
		_, err = ri.Create(ctx, o, metav1.CreateOptions{DryRun: dry, FieldValidation: metav1.FieldValidationStrict})
		if apierrors.IsAlreadyExists(err) {
			var cur *unstructured.Unstructured
			if cur, err = ri.Get(ctx, o.GetName(), metav1.GetOptions{}); err == nil {
				o = o.DeepCopy()
				o.SetResourceVersion(cur.GetResourceVersion())
				_, err = ri.Update(ctx, o, metav1.UpdateOptions{DryRun: dry, FieldValidation: metav1.FieldValidationStrict})
			}
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
	}
	return nil
}

// ApplyFile is Apply of the manifest at path.
func (c *Cluster) ApplyFile(ctx context.Context, path string, dryRun bool) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	objs, err := Objects(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, c.Apply(ctx, objs, dryRun)
}

// Proxy forwards every connection l accepts to the API server on loopback:
// l can live in another network namespace (a test's underlay), where
// clients (agents in node namespaces) reach the API server at l's address
// as they would a control-plane node. Closing l (or the returned stop)
// ends it and every forwarded connection.
func (c *Cluster) Proxy(l net.Listener) (stop func()) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	track := func(cn net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false
		}
		if add {
			conns[cn] = struct{}{}
		} else {
			delete(conns, cn)
		}
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.forward(in, track)
			}()
		}
	}()
	return func() {
		l.Close()
		mu.Lock()
		for cn := range conns {
			cn.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	}
}

// forward pipes in to a new connection to the API server both ways until
// either side ends.
func (c *Cluster) forward(in net.Conn, track func(net.Conn, bool) bool) {
	defer in.Close()
	out, err := net.DialTimeout("tcp", c.Address(), 5*time.Second)
	if err != nil {
		return
	}
	defer out.Close()
	if !track(in, true) || !track(out, true) {
		return
	}
	defer track(in, false)
	defer track(out, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
	<-done
}

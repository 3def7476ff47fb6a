package etcdstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	"github.com/braid-cni/braid/internal/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startEtcd runs a throwaway etcd on loopback ports and returns a client.
func startEtcd(t *testing.T) *Client {
	return startEtcdWith(t, "http", Config{Prefix: "/test"})
}

// startEtcdWith runs etcd with its client URL on scheme and extra flags,
// and connects with conf (its endpoints filled in).
func startEtcdWith(t *testing.T, scheme string, conf Config, flags ...string) *Client {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		testenv.Unavailable(t, "etcd is not installed (make deps installs etcd-server)")
	}
	client, peer := freePort(t), freePort(t)
	url := scheme + "://127.0.0.1:" + client
	cmd := exec.Command(bin, append([]string{"--name", "t", "--data-dir", t.TempDir(), "--logger", "zap", "--log-level", "error",
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", "http://127.0.0.1:" + peer, "--initial-advertise-peer-urls", "http://127.0.0.1:" + peer,
		"--initial-cluster", "t=http://127.0.0.1:" + peer}, flags...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	conf.Endpoints = []string{url}
	c, err := Connect(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := c.Get(ctx, "ping"); err == nil {
			return c
		} else if ctx.Err() != nil {
			t.Fatalf("etcd did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func member(c *Client, name string, ip byte, cluster string) *Member {
	return &Member{
		Client:      c,
		Node:        store.Node{Name: name, NodeIP: netip.AddrFrom4([4]byte{198, 18, 0, ip}), Device: "eth0"},
		ClusterCIDR: netip.MustParsePrefix(cluster),
		NodeBits:    24,
		LeaseTTL:    5 * time.Second,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func grant(t *testing.T, c *Client) clientv3.LeaseID {
	t.Helper()
	l, err := c.Grant(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	return l.ID
}

// Twenty agents claiming at once from a /19 (32 CIDRs) all get one, no two
// the same; a node registering again keeps its own; when none is left the
// error says so.
func TestClaimsAreExclusive(t *testing.T) {
	c := startEtcd(t)
	ctx := context.Background()
	const n = 20
	got := make([]netip.Prefix, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := member(c, fmt.Sprintf("node%02d", i), byte(i+1), "198.19.0.0/19")
			got[i], errs[i] = m.Register(ctx, grant(t, c))
		})
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i, p := range got {
		if errs[i] != nil {
			t.Fatalf("node%02d: %v", i, errs[i])
		}
		if j, dup := seen[p]; dup {
			t.Errorf("node%02d and node%02d both claimed %s", j, i, p)
		}
		seen[p] = i
	}
	again, err := member(c, "node07", 8, "198.19.0.0/19").Register(ctx, grant(t, c))
	if err != nil || again != got[7] {
		t.Errorf("node07 registering again got %s (%v), want its %s", again, err, got[7])
	}
	// A preferred CIDR (the one the node's pods use) is honoured when free.
	m := member(c, "pref", 100, "198.19.0.0/19")
	m.Node.PodCIDR = netip.MustParsePrefix("198.19.31.0/24")
	if p, err := m.Register(ctx, grant(t, c)); err != nil || p != m.Node.PodCIDR {
		t.Errorf("preferred: got %s (%v)", p, err)
	}
	small := member(c, "late", 200, "198.19.0.0/23") // its 2 CIDRs are taken
	if _, err := small.Register(ctx, grant(t, c)); err == nil || !strings.Contains(err.Error(), "no free /24") {
		t.Errorf("exhausted cluster CIDR: %v", err)
	}

	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != n+1 || !nodes[0].Up {
		t.Fatalf("Nodes = %+v, %v", nodes, err)
	}
	if ok, err := c.DeleteNode(ctx, "node00"); !ok || err != nil {
		t.Fatalf("DeleteNode: %v %v", ok, err)
	}
	if p, err := member(c, "newcomer", 250, "198.19.0.0/19").Register(ctx, grant(t, c)); err != nil || p != got[0] {
		t.Errorf("after release the first free CIDR is %s, got %s (%v)", got[0], p, err)
	}
}

func TestServices(t *testing.T) {
	c := startEtcd(t)
	ctx := context.Background()
	web := store.Service{Name: "web", VIP: netip.MustParseAddr("198.18.100.1"), Port: 80, Protocol: "tcp",
		Backends: []store.Backend{{IP: netip.MustParseAddr("198.19.1.2"), Port: 8080}}}
	if err := c.PutServices(ctx, web); err != nil {
		t.Fatal(err)
	}
	clash := web
	clash.Name = "clash"
	if err := c.PutServices(ctx, clash); err == nil || !strings.Contains(err.Error(), "already service web's") {
		t.Errorf("a second service on web's address: %v", err)
	}
	if err := c.UpdateService(ctx, "web", func(s *store.Service) error { s.Backends = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	svcs, err := c.Services(ctx)
	if err != nil || len(svcs) != 1 || len(svcs[0].Backends) != 0 || svcs[0].Type != store.ClusterIP {
		t.Errorf("Services = %+v, %v", svcs, err)
	}
	if ok, err := c.DeleteService(ctx, "web"); !ok || err != nil {
		t.Errorf("DeleteService: %v %v", ok, err)
	}
	if ok, _ := c.DeleteService(ctx, "web"); ok {
		t.Error("deleted web twice")
	}
}

// A member's views follow etcd: peers appear and go with their leases,
// services as they are written.
func TestMemberViews(t *testing.T) {
	c := startEtcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	views := make(chan datastore.View, 100)
	m := member(c, "a", 1, "198.19.0.0/16")
	go m.Run(ctx, func(v datastore.View) { views <- v })
	wait := func(what string, ok func(datastore.View) bool) datastore.View {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case v := <-views:
				if ok(v) {
					return v
				}
			case <-deadline:
				t.Fatalf("no view with %s", what)
			}
		}
	}
	v := wait("self", func(v datastore.View) bool { return v.Self.PodCIDR.IsValid() })
	if v.Self.Name != "a" || len(v.Peers) != 0 || !m.Connected() {
		t.Errorf("first view %+v", v)
	}
	// A peer registers under a lease that is then revoked.
	lease := grant(t, c)
	if _, err := member(c, "b", 2, "198.19.0.0/16").Register(ctx, lease); err != nil {
		t.Fatal(err)
	}
	wait("peer b", func(v datastore.View) bool { return len(v.Peers) == 1 && v.Peers[0].Name == "b" })
	if err := c.PutServices(ctx, store.Service{Name: "s", VIP: netip.MustParseAddr("198.18.100.1"), Port: 80, Protocol: "tcp"}); err != nil {
		t.Fatal(err)
	}
	wait("service s", func(v datastore.View) bool { return len(v.Services) == 1 })
	if _, err := c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	wait("b gone", func(v datastore.View) bool { return len(v.Peers) == 0 && len(v.Services) == 1 })
}

// With --etcd-cert/--etcd-key/--etcd-ca the client speaks TLS and proves
// itself with its certificate (etcd --client-cert-auth).
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, nil, nil, "braid test CA", dir, "ca")
	newCert(t, ca, caKey, "etcd", dir, "server")
	newCert(t, ca, caKey, "braid-agent", dir, "client")
	p := func(name string) string { return filepath.Join(dir, name) }
	c := startEtcdWith(t, "https", Config{CertFile: p("client.crt"), KeyFile: p("client.key"), CAFile: p("ca.crt")},
		"--cert-file", p("server.crt"), "--key-file", p("server.key"), "--client-cert-auth", "--trusted-ca-file", p("ca.crt"))
	if err := c.PutServices(context.Background(), store.Service{Name: "s", VIP: netip.MustParseAddr("198.18.100.1"), Port: 80, Protocol: "tcp"}); err != nil {
		t.Fatal(err)
	}
}

// newCert writes <name>.crt and <name>.key in dir: a CA when parent is
// nil, else a certificate for 127.0.0.1 signed by it.
func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".crt", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// The etcd Cluster: nodes join by themselves (PutNode is refused, saying
// how), are listed up or down, and released; services are checked against
// every service etcd holds, including the maps' capacity on a node.
func TestCluster(t *testing.T) {
	c := startEtcd(t)
	ctx := context.Background()
	var cl datastore.Cluster = c
	p := store.Peer{Name: "n2", NodeIP: netip.MustParseAddr("198.18.0.2"), PodCIDR: netip.MustParsePrefix("198.19.2.0/24")}
	if err := cl.PutNode(ctx, p); !errors.Is(err, datastore.ErrReadOnly) || !strings.Contains(err.Error(), "braid agent --datastore etcd") {
		t.Errorf("PutNode: %v; want a read-only error naming braid agent", err)
	}
	lease := grant(t, c)
	cidr, err := member(c, "n1", 1, "198.19.0.0/16").Register(ctx, lease)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := cl.Nodes(ctx)
	want := datastore.NodeInfo{Name: "n1", NodeIP: netip.MustParseAddr("198.18.0.1"), PodCIDR: cidr, Up: true}
	if err != nil || len(nodes) != 1 || nodes[0] != want {
		t.Fatalf("Nodes = %+v %v, want %+v", nodes, err, want)
	}
	if _, err := c.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	// Down: the claim stays, the registration (and its IP) is gone.
	nodes, err = cl.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0] != (datastore.NodeInfo{Name: "n1", PodCIDR: cidr}) {
		t.Errorf("Nodes after the lease = %+v %v", nodes, err)
	}
	if ok, err := cl.DeleteNode(ctx, "n1"); !ok || err != nil {
		t.Errorf("DeleteNode = %v %v", ok, err)
	}
	if ok, err := cl.DeleteNode(ctx, "n1"); ok || err != nil {
		t.Errorf("DeleteNode again = %v %v", ok, err)
	}

	if err := cl.UpdateService(ctx, "nope", func(*store.Service) error { return nil }); err == nil || !strings.Contains(err.Error(), `no service "nope"`) {
		t.Errorf("UpdateService(nope): %v", err)
	}
	// dsr's node-port map full: one NodePort service more is refused, a
	// replaced one is not.
	nodePort := func(i int) store.Service {
		return store.Service{Name: fmt.Sprintf("np%04d", i), VIP: netip.AddrFrom4([4]byte{198, 18, byte(100 + i/250), byte(1 + i%250)}),
			Port: 80, Protocol: store.TCP, Type: store.NodePort, NodePort: uint16(20000 + i)}
	}
	for i := 0; i < store.MaxNodePorts; i += MaxTxnOps {
		var batch []store.Service
		for k := i; k < min(i+MaxTxnOps, store.MaxNodePorts); k++ {
			batch = append(batch, nodePort(k))
		}
		if err := cl.PutServices(ctx, batch...); err != nil {
			t.Fatalf("services %d…: %v", i, err)
		}
	}
	if err := cl.PutServices(ctx, nodePort(store.MaxNodePorts)); err == nil || !strings.Contains(err.Error(), "dsr's node-port map") {
		t.Errorf("NodePort service %d: %v; want refused for the node-port map", store.MaxNodePorts+1, err)
	}
	replaced := nodePort(0)
	replaced.NodePort = 30000
	if err := cl.PutServices(ctx, replaced); err != nil {
		t.Errorf("replacing one of %d NodePort services: %v", store.MaxNodePorts, err)
	}
	if svcs, err := cl.Services(ctx); err != nil || len(svcs) != store.MaxNodePorts {
		t.Errorf("Services: %d, %v; want %d", len(svcs), err, store.MaxNodePorts)
	}
}

package kubernetes

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/braid-cni/braid/internal/sockprobe"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The API server stopped: every node keeps forwarding its last view and
// its agent's /healthz says degraded; started again: /healthz is ok and the next change is followed within a
// second. (The suite's API server is
// restarted for real: etcd keeps the objects.)
func TestAPIServerRestart(t *testing.T) {
	c := newCluster(t, vxlanLB, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	b1 := c.backend(t, 1, "b1", 8080)
	b2 := c.backend(t, 2, "b2", 8080)
	client := probe(t, n2, n2.chain.AddPod(t, "client"))
	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: tcpPorts("http:80:8080")}})
	vip := clusterIP(svc, 80)
	c.putSlice(t, "web", "web-1", []slicePort{{"http", 8080}}, readyEP(b1, n1))
	within(t, start, "the Service", exactly(t, client, vip, "b1"))
	for _, nd := range c.nodes {
		nd.waitHealth(t, "ok", 10*time.Second)
	}

	t.Cleanup(func() {
		if !c.cp.APIServerRunning() {
			if err := c.cp.StartAPIServer(); err != nil {
				t.Errorf("restart the API server: %v", err)
			}
		}
	})
	if err := c.cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		time.Sleep(time.Second)
		if err := exactly(t, client, vip, "b1")(); err != nil {
			t.Fatalf("the API server away: %v", err)
		}
	}
	for _, nd := range c.nodes {
		nd.waitHealth(t, "degraded", 10*time.Second)
	}
	if err := exactly(t, client, vip, "b1")(); err != nil {
		t.Fatalf("the API server away, agents degraded: %v", err)
	}

	if err := c.cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes {
		nd.waitHealth(t, "ok", 30*time.Second)
	}
	if err := exactly(t, client, vip, "b1")(); err != nil {
		t.Fatalf("the API server back: %v", err)
	}
	// The informers catch up (a watch call in flight may be retrying a
	// failed handshake: seconds, not the one-second bound)...
	start = time.Now()
	c.putSlice(t, "web", "web-1", []slicePort{{"http", 8080}}, readyEP(b1, n1), readyEP(b2, n2))
	check := exactly(t, client, vip, "b1", "b2")
	for err := check(); err != nil; err = check() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the first change after the restart not followed within 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the first change after the restart followed after %v", time.Since(start).Round(time.Millisecond))
	// ...then changes are followed within the bound again.
	start = time.Now()
	c.putSlice(t, "web", "web-1", []slicePort{{"http", 8080}}, readyEP(b2, n2))
	within(t, start, "an endpoint removed after the restart", exactly(t, client, vip, "b2"))
}

// An agent restarted (as a DaemonSet rollout does) rebuilds its view from a
// fresh list without disturbing traffic: a client on its node connects
// every 20 ms throughout, and every connection is answered.
func TestAgentRestart(t *testing.T) {
	c := newCluster(t, vxlanLB, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	b1 := c.backend(t, 1, "b1", 8080)
	b2 := c.backend(t, 2, "b2", 8080)
	client := probe(t, n2, n2.chain.AddPod(t, "client"))
	start := time.Now()
	svc := c.service(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: tcpPorts("http:80:8080")}})
	vip := clusterIP(svc, 80)
	c.putSlice(t, "web", "web-1", []slicePort{{"http", 8080}}, readyEP(b1, n1), readyEP(b2, n2))
	within(t, start, "the Service", exactly(t, client, vip, "b1", "b2"))

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := client.Do(sockprobe.Request{Op: sockprobe.OpTCP, Dst: vip.String(), Timeout: time.Second})
			if err == nil && len(resp.Results) == 1 && resp.Results[0].Err == "" {
				ok.Add(1)
				continue
			}
			failed.Add(1)
			firstErr.CompareAndSwap(nil, fmt.Sprint(err, resp.Results))
		}
	})
	defer func() { close(stop); wg.Wait() }()

	n2.stopAgent(t)
	time.Sleep(500 * time.Millisecond)
	c.startAgent(t, n2)
	n2.waitRegistered(t)
	n2.waitHealth(t, "ok", 30*time.Second)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	t.Logf("%d connections through the restart, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() < 20 {
		t.Fatalf("%d of %d connections failed through the agent restart (first: %v)", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	// And the restarted agent follows changes.
	start = time.Now()
	c.putSlice(t, "web", "web-1", []slicePort{{"http", 8080}}, readyEP(b2, n2))
	within(t, start, "a change after the restart", exactly(t, client, vip, "b2"))
}

// waitHealth waits for the agent's /healthz status (ok, degraded).
func (nd *node) waitHealth(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		code, body, err := nd.httpGet("/healthz")
		var h struct {
			Status string `json:"status"`
		}
		if err == nil && json.Unmarshal(body, &h) == nil {
			if h.Status == want && (code == 200) == (want == "ok") {
				t.Logf("%s: /healthz %d %s", nd.Name, code, want)
				return
			}
			last = fmt.Sprintf("%d %s", code, body)
		} else {
			last = fmt.Sprint(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: /healthz not %s within %v: %s", nd.Name, want, timeout, last)
}

package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/braid-cni/braid/bench/internal/kit"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const namespace = "default"

// api writes the bench's objects, with a client whose rate limit is off:
// Services are created in bulk.
type api struct{ client kubernetes.Interface }

func newAPI(cfg *rest.Config) (*api, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 5000, 10000
	client, err := kubernetes.NewForConfig(c)
	return &api{client: client}, err
}

// createNode creates n's Node with its pod CIDR and InternalIP, as
// kube-controller-manager and a kubelet would.
func (a *api) createNode(ctx context.Context, n *node) error {
	obj, err := a.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.k8sName()},
		Spec: corev1.NodeSpec{PodCIDR: n.podCIDR(), PodCIDRs: []string{n.podCIDR()}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	obj.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip()}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now()}},
	}
	_, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	return err
}

// svc is one selector-less Service and its one EndpointSlice.
type svc struct {
	name      string
	clusterIP netip.Addr
	ports     []int32 // port = targetPort
	endpoints []string
	ready     bool
}

// fillerIP is the i-th filler's ClusterIP: 198.18.130.0 up (198.18.128.x
// is the API server's own `kubernetes` Service's, 198.18.255.x the
// measured ones').
func fillerIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(130 + i/256), byte(i % 256)})
}

// filler i: port 80, 3 endpoints in a pod CIDR no node has (198.19.200.0/24).
func filler(i int) svc {
	eps := make([]string, 3)
	for j := range eps {
		eps[j] = fmt.Sprintf("198.19.200.%d", 1+(3*i+j)%250)
	}
	return svc{name: fmt.Sprintf("filler-%05d", i), clusterIP: fillerIP(i), ports: []int32{80}, endpoints: eps, ready: true}
}

func (s svc) slice() *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: s.name, Labels: map[string]string{discoveryv1.LabelServiceName: s.name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range s.ports {
		name, port, proto := portName(p), p, corev1.ProtocolTCP
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
	}
	for _, ip := range s.endpoints {
		ready := s.ready
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready}})
	}
	return es
}

func portName(p int32) string { return fmt.Sprintf("p%d", p) }

// create creates s's Service and EndpointSlice.
func (a *api) create(ctx context.Context, s svc) error {
	obj := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: s.clusterIP.String()}}
	for _, p := range s.ports {
		obj.Spec.Ports = append(obj.Spec.Ports, corev1.ServicePort{Name: portName(p), Protocol: corev1.ProtocolTCP,
			Port: p, TargetPort: intstr.FromInt32(p)})
	}
	if _, err := a.client.CoreV1().Services(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service %s: %w", s.name, err)
	}
	if _, err := a.client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, s.slice(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create endpointslice %s: %w", s.name, err)
	}
	return nil
}

// setReady rewrites s's EndpointSlice with its endpoints ready or not.
func (a *api) setReady(ctx context.Context, s svc, ready bool) error {
	s.ready = ready
	es := s.slice()
	cur, err := a.client.DiscoveryV1().EndpointSlices(namespace).Get(ctx, s.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Endpoints = es.Endpoints
	_, err = a.client.DiscoveryV1().EndpointSlices(namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// createFillers creates fillers from..to-1 with 32 workers and returns how
// long it took.
func (a *api) createFillers(ctx context.Context, from, to int) (time.Duration, error) {
	start := time.Now()
	next := make(chan int)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := a.create(ctx, filler(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := from; i < to; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if to-from > 0 {
		kit.Progress("created %d Services and EndpointSlices in %s", to-from, time.Since(start).Round(time.Millisecond))
	}
	return time.Since(start), err
}

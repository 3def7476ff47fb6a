package k8sstore

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// TestScale10k times what the agent does at 10,000 Services × 3
// endpoints: translating every Service (at start), one Service again and
// the view (each change).
func TestScale10k(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const n = 10000
	f := &follower{byService: map[string]translated{}, nodeView: Nodes{}}
	type in struct {
		svc *corev1.Service
		eps []*discoveryv1.EndpointSlice
	}
	ins := make([]in, n)
	for i := range n {
		ip := fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250)
		s := svcNamed(fmt.Sprintf("s%d", i), ip)
		sl := slice(fmt.Sprintf("s%d-1", i), map[string]int32{"": 8080},
			ep(fmt.Sprintf("10.244.%d.%d", i%200, 1+i%250), "rs", ""), ep(fmt.Sprintf("10.245.%d.%d", i%200, 1+i%250), "rs", ""),
			ep(fmt.Sprintf("10.246.%d.%d", i%200, 1+i%250), "rs", ""))
		ins[i] = in{s, []*discoveryv1.EndpointSlice{sl}}
	}
	start := time.Now()
	for i, x := range ins {
		e, p := ServiceEntries(x.svc, x.eps, self)
		f.byService[fmt.Sprintf("ns/s%d", i)] = translated{e, p}
	}
	all := time.Since(start)
	start = time.Now()
	v := f.view()
	first := time.Since(start)
	start = time.Now()
	e, p := ServiceEntries(ins[5].svc, ins[5].eps, self)
	f.byService["ns/s5"] = translated{e, p}
	v = f.view()
	one := time.Since(start)
	if len(v.Services) != n || len(v.Problems) != 0 {
		t.Fatalf("%d services, problems %q", len(v.Services), v.Problems[:min(3, len(v.Problems))])
	}
	t.Logf("%d Services x 3 endpoints: translate all %s, view %s; one Service changed: translate and view %s", n, all, first, one)
}

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
)

// fakeProc is a plugin server process that runs until exited is set.
type fakeProc struct{ exited bool }

func (p *fakeProc) Exited() bool { return p.exited }
func (p *fakeProc) Kill()        { p.exited = true }

// fakeClient answers Reconcile with reconcile and Status with status; the
// other methods are not used by these tests.
type fakeClient struct {
	datapathrpc.DatapathClient
	reconcile func() (*datapathrpc.Report, error)
	status    *datapathrpc.StatusReply
}

func (f *fakeClient) Reconcile(context.Context, *datapathrpc.Request, ...grpc.CallOption) (*datapathrpc.Report, error) {
	return f.reconcile()
}

func (f *fakeClient) Status(context.Context, *datapathrpc.Request, ...grpc.CallOption) (*datapathrpc.StatusReply, error) {
	return f.status, nil
}

func (f *fakeClient) Info(context.Context, *datapathrpc.Request, ...grpc.CallOption) (*datapathrpc.InfoReply, error) {
	return &datapathrpc.InfoReply{Version: "test"}, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testAgent is an agent hosting plugins without a node: no bpffs, no
// conflist, a node store in a temporary folder.
func testAgent(t *testing.T, plugins ...*hosted) *Agent {
	a := &Agent{cfg: Config{StateDir: t.TempDir()}, log: quiet(), metrics: newMetrics(),
		trigger: make(chan struct{}, 1), problems: map[string][]string{}}
	for _, h := range plugins {
		h.log = a.log
		a.plugins = append(a.plugins, h)
	}
	return a
}

// fakePlugin is a hosted plugin with a running fake server.
func fakePlugin(name string, c *fakeClient) *hosted {
	return &hosted{name: name, proc: &fakeProc{}, rpc: c, pid: 1}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// sample is the value of the metric's sample with exactly these labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		match := true
		for i, l := range m.GetLabel() {
			match = match && l.GetName() == labels[2*i] && l.GetValue() == labels[2*i+1]
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

func TestStatusBecomesMetrics(t *testing.T) {
	m := newMetrics()
	shared := &datapathrpc.Map{Name: "endpoints", Entries: 3, MaxEntries: 4096}
	m.setStatus("veth-ebpf", &datapathrpc.StatusReply{
		Maps: []*datapathrpc.Map{shared, {Name: "veth-ebpf/counters", Entries: 9, MaxEntries: 9}},
		Counters: []*datapathrpc.Counter{
			{Index: 0, Name: "redirect_peer", Value: 120},
			{Index: 2, Name: "drop_spoof_ip", Value: 7, Drop: true},
			{Index: 5, Value: 2}, // a counter the plugin gave no name
		},
		Attachments: []*datapathrpc.Attachment{{Pin: "a", Present: true}, {Pin: "b", Present: true}, {Pin: "c"}},
	})
	m.setStatus("sock-lb", &datapathrpc.StatusReply{Maps: []*datapathrpc.Map{shared, {Name: "sock-lb/lb_services", Entries: 1, MaxEntries: 65536}}})
	fams := gather(t, m.reg)
	for _, c := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"braid_map_entries", []string{"map", "endpoints"}, 3},
		{"braid_map_max_entries", []string{"map", "endpoints"}, 4096},
		{"braid_map_entries", []string{"map", "sock-lb/lb_services"}, 1},
		{"braid_map_max_entries", []string{"map", "sock-lb/lb_services"}, 65536},
		{"braid_plugin_packets_total", []string{"plugin", "veth-ebpf", "reason", "redirect_peer"}, 120},
		{"braid_plugin_packets_total", []string{"plugin", "veth-ebpf", "reason", "index_5"}, 2},
		{"braid_plugin_drops_total", []string{"plugin", "veth-ebpf", "reason", "drop_spoof_ip"}, 7},
		{"braid_plugin_attachments", []string{"plugin", "veth-ebpf", "present", "true"}, 2},
		{"braid_plugin_attachments", []string{"plugin", "veth-ebpf", "present", "false"}, 1},
	} {
		if got, ok := sample(fams, c.metric, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.metric, c.labels, got, ok, c.want)
		}
	}
	// The shared endpoint map is in every reply, and exported once.
	if n := len(fams["braid_map_entries"].GetMetric()); n != 3 {
		t.Errorf("braid_map_entries has %d samples, want 3 (endpoints once)", n)
	}
	if _, ok := sample(fams, "braid_plugin_packets_total", "plugin", "veth-ebpf", "reason", "drop_spoof_ip"); ok {
		t.Error("a drop counter is also exported as packets")
	}
}

func healthz(t *testing.T, a *Agent) (int, health) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.metrics.handler(a.health).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var h health
	if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
		t.Fatalf("/healthz body %q: %v", rec.Body, err)
	}
	return rec.Code, h
}

func TestHealthz(t *testing.T) {
	ok := func() (*datapathrpc.Report, error) { return &datapathrpc.Report{}, nil }
	a := testAgent(t, fakePlugin("veth-ebpf", &fakeClient{reconcile: ok}), fakePlugin("sock-lb", &fakeClient{reconcile: ok}))
	if code, h := healthz(t, a); code != http.StatusOK || h.Status != "ok" || !h.Plugins["veth-ebpf"] || !h.Plugins["sock-lb"] {
		t.Errorf("all up: %d %+v, want 200 ok", code, h)
	}

	a.plugins[1].proc.Kill()
	code, h := healthz(t, a)
	if code != http.StatusServiceUnavailable || h.Status != "degraded" || h.Plugins["sock-lb"] || !h.Plugins["veth-ebpf"] {
		t.Errorf("sock-lb down: %d %+v, want 503 degraded", code, h)
	}
	a.reconcileAll(context.Background())
	if _, h := healthz(t, a); len(h.Problems) != 1 {
		t.Errorf("problems after a reconcile with sock-lb down: %q, want one", h.Problems)
	}

	// A braid plugin whose server never started is hosted, and reported.
	never := &hosted{name: "dsr"}
	a = testAgent(t, fakePlugin("veth-ebpf", &fakeClient{reconcile: ok, status: &datapathrpc.StatusReply{}}), never)
	if code, h := healthz(t, a); code != http.StatusServiceUnavailable || h.Plugins["dsr"] {
		t.Errorf("dsr never started: %d %+v, want 503 with dsr down", code, h)
	}
	a.pollStatus(context.Background())
	fams := gather(t, a.metrics.reg)
	if up, _ := sample(fams, "braid_plugin_up", "plugin", "veth-ebpf"); up != 1 {
		t.Errorf("braid_plugin_up{veth-ebpf} = %v, want 1", up)
	}
	if up, ok := sample(fams, "braid_plugin_up", "plugin", "dsr"); !ok || up != 0 {
		t.Errorf("braid_plugin_up{dsr} = %v (present %v), want 0", up, ok)
	}
}

func TestReconcileErrorsCounted(t *testing.T) {
	var calls []string
	reply := func(name string, r *datapathrpc.Report, err error) *fakeClient {
		return &fakeClient{reconcile: func() (*datapathrpc.Report, error) {
			calls = append(calls, name)
			return r, err
		}}
	}
	a := testAgent(t,
		fakePlugin("fine", reply("fine", &datapathrpc.Report{Changes: []string{"route 198.19.1.0/24"}}, nil)),
		fakePlugin("unfixed", reply("unfixed", &datapathrpc.Report{Problems: []string{"no such device"}}, nil)),
		fakePlugin("failing", reply("failing", nil, errors.New("rpc error"))),
		&hosted{name: "down"})
	for range 2 {
		a.reconcileAll(context.Background())
	}
	if want := []string{"fine", "unfixed", "failing", "fine", "unfixed", "failing"}; len(calls) != len(want) {
		t.Errorf("calls %v, want %v (conflist order)", calls, want)
	}
	fams := gather(t, a.metrics.reg)
	for plugin, want := range map[string]float64{"unfixed": 2, "failing": 2, "down": 2} {
		if got, _ := sample(fams, "braid_reconcile_errors_total", "plugin", plugin); got != want {
			t.Errorf("braid_reconcile_errors_total{plugin=%q} = %v, want %v", plugin, got, want)
		}
	}
	if got, ok := sample(fams, "braid_reconcile_errors_total", "plugin", "fine"); ok && got != 0 {
		t.Errorf("braid_reconcile_errors_total{plugin=\"fine\"} = %v, want 0", got)
	}
	if _, h := healthz(t, a); len(h.Problems) != 3 {
		t.Errorf("problems %q, want one for each of unfixed, failing and down", h.Problems)
	}
}

func TestBraidBuild(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !braidBuild(self) {
		t.Errorf("this test binary, built from braid's module, is not seen as a braid build")
	}
	script := t.TempDir() + "/ptp"
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho CNI ptp plugin >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if braidBuild(script) {
		t.Errorf("a shell script is seen as a braid build")
	}
}

func TestBinaryReplacedAfterSettling(t *testing.T) {
	bin := t.TempDir() + "/plugin"
	write := func(content string) {
		t.Helper()
		tmp := bin + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
	}
	write("v1")
	id, err := statBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	h := &hosted{bin: bin, binary: id}
	now := time.Now()
	if h.binaryReplaced(now.Add(time.Hour)) {
		t.Fatal("the running server's own binary is seen as replaced")
	}
	write("v2") // same size, new inode
	if h.binaryReplaced(now) {
		t.Error("replaced at once: the installer may still be writing")
	}
	if h.binaryReplaced(now.Add(settle / 2)) {
		t.Error("replaced before settling")
	}
	write("v3, longer") // still changing: settling starts over
	if h.binaryReplaced(now.Add(settle)) {
		t.Error("replaced while the file still changes")
	}
	if !h.binaryReplaced(now.Add(2 * settle)) {
		t.Error("a settled new binary is not seen as replaced")
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if h.binaryReplaced(now.Add(time.Hour)) {
		t.Error("a removed binary is seen as replaced: the running server should stay")
	}
}

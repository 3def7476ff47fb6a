package agent

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/braid-cni/braid/core/datapathrpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics. Gauges are set as things
// happen; the plugins' own numbers (maps, counters, attachments) come from
// the last Status of each plugin, kept in statuses.
type metrics struct {
	reg              *prometheus.Registry
	endpoints        prometheus.Gauge
	peers            prometheus.Gauge
	services         prometheus.Gauge
	skipped          prometheus.Gauge
	datastoreUp      prometheus.Gauge
	reconcileSeconds *prometheus.HistogramVec
	reconcileErrors  *prometheus.CounterVec
	gcErrors         *prometheus.CounterVec
	pluginUp         *prometheus.GaugeVec
	pluginRestarts   *prometheus.CounterVec
	pluginInfo       *prometheus.GaugeVec

	mu       sync.Mutex
	statuses map[string]*datapathrpc.StatusReply // by plugin
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "braid_endpoints", Help: "Endpoints (pod attachments) in the node store."}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "braid_peers", Help: "Other nodes in the node store."}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "braid_services", Help: "Services in the node store."}),
		skipped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "braid_datastore_entries_refused", Help: "Nodes and services from the datastore the node store refused (invalid or conflicting)."}),
		datastoreUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "braid_datastore_up", Help: "1 when the node is registered with the cluster datastore (always 1 with the local one)."}),
		reconcileSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "braid_reconcile_duration_seconds", Help: "Time a plugin's Reconcile took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"plugin"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "braid_reconcile_errors_total", Help: "Reconciles that failed or left problems."}, []string{"plugin"}),
		gcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "braid_gc_errors_total", Help: "GC runs that failed or left problems."}, []string{"plugin"}),
		pluginUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "braid_plugin_up", Help: "1 while the plugin's server runs."}, []string{"plugin"}),
		pluginRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "braid_plugin_restarts_total", Help: "Times the plugin's server was started again: it died or had not started, or its binary was replaced."}, []string{"plugin"}),
		pluginInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "braid_plugin_info", Help: "The plugin server's version and program count (from Info), always 1."}, []string{"plugin", "version", "programs"}),
		statuses: map[string]*datapathrpc.StatusReply{},
	}
	m.reg.MustRegister(m.endpoints, m.peers, m.services, m.skipped, m.datastoreUp, m.reconcileSeconds,
		m.reconcileErrors, m.gcErrors, m.pluginUp, m.pluginRestarts, m.pluginInfo, (*statusCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setStatus(plugin string, s *datapathrpc.StatusReply) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.statuses[plugin] = s
}

// statusCollector exports the plugins' last Status replies.
type statusCollector metrics

var (
	descMapEntries = prometheus.NewDesc("braid_map_entries", "Entries in a pinned BPF map (arrays: max entries).", []string{"map"}, nil)
	descMapMax     = prometheus.NewDesc("braid_map_max_entries", "Capacity of a pinned BPF map.", []string{"map"}, nil)
	descPackets    = prometheus.NewDesc("braid_plugin_packets_total", "Packets a plugin's programs counted, by reason.", []string{"plugin", "reason"}, nil)
	descDrops      = prometheus.NewDesc("braid_plugin_drops_total", "Packets a plugin's programs dropped, by reason.", []string{"plugin", "reason"}, nil)
	descAttach     = prometheus.NewDesc("braid_plugin_attachments", "A plugin's pinned links, by whether their target exists.", []string{"plugin", "present"}, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMapEntries, descMapMax, descPackets, descDrops, descAttach} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seenMap := map[string]bool{} // the shared endpoint map is in every reply
	for plugin, s := range c.statuses {
		for _, mp := range s.Maps {
			if seenMap[mp.Name] {
				continue
			}
			seenMap[mp.Name] = true
			ch <- prometheus.MustNewConstMetric(descMapEntries, prometheus.GaugeValue, float64(mp.Entries), mp.Name)
			ch <- prometheus.MustNewConstMetric(descMapMax, prometheus.GaugeValue, float64(mp.MaxEntries), mp.Name)
		}
		for _, ct := range s.Counters {
			desc, reason := descPackets, ct.Name
			if ct.Drop {
				desc = descDrops
			}
			if reason == "" {
				reason = "index_" + strconv.Itoa(int(ct.Index))
			}
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(ct.Value), plugin, reason)
		}
		present := 0
		for _, a := range s.Attachments {
			if a.Present {
				present++
			}
		}
		ch <- prometheus.MustNewConstMetric(descAttach, prometheus.GaugeValue, float64(present), plugin, "true")
		ch <- prometheus.MustNewConstMetric(descAttach, prometheus.GaugeValue, float64(len(s.Attachments)-present), plugin, "false")
	}
}

// health is what /healthz reports.
type health struct {
	Status    string          `json:"status"` // ok or degraded
	Plugins   map[string]bool `json:"plugins"`
	Datastore bool            `json:"datastore"`
	Problems  []string        `json:"problems"`
}

// handler serves /metrics and /healthz. /healthz is 503 while a plugin is
// down or the datastore is unreachable: a readiness signal, not a reason
// to restart the agent (which would fix neither).
func (m *metrics) handler(healthOf func() health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := healthOf()
		w.Header().Set("Content-Type", "application/json")
		if h.Status != "ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	return mux
}

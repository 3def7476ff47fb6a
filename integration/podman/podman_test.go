// Package podman runs braid under a real container runtime: podman 4 from
// Debian with its CNI network backend and a conflist from chain-configs/,
// containers from a busybox image built offline, and checks what a user
// would: addresses, container-to-container TCP, a service VIP, `podman
// network` commands, and that stopping, restarting and removing containers
// leaves nothing behind on the node.
//
// Where the node is: podman runs inside the braid node's network namespace
// (every podman command is started from a thread that joined it, as
// `nsenter --net` does). conmon, runc and the CNI plugins podman runs
// inherit it, so the node's veths, routes and pins are made exactly as on a
// real node where podman runs in the host netns, while the machine's own
// host netns, its sysctls and its devices are never touched. Each
// container still gets a netns of its own (/run/netns/netns-<uuid>). Stop
// and cleanup must run in the node netns too (CNI DEL removes the node's
// routes there): they do, as every podman command and conmon's cleanup
// command start from it.
//
// Where the containers' processes are: podman's cgroupfs manager on this
// hybrid cgroup layout puts a container in <hierarchy>/<cgroup-parent>/
// libpod-<id> of every v1 hierarchy and of the cgroup2 one. Containers run
// with --cgroup-parent /bp-<topology>, and sock-lb's cgroupRoot is that
// folder of the cgroup2 mount: the test's containers are balanced, nothing
// else on the machine is.
//
// Only addresses of 198.18.0.0/15 are used; the node has no route out.
package podman

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/braid-cni/braid/integration/harness"
	current "github.com/containernetworking/cni/pkg/types/100"
)

const (
	conflist   = "native-lb.conflist" // veth-ebpf, sock-lb, dsr, native-route
	serverPort = "8080"
	vip        = "198.18.100.10"
	vipPort    = "80"
	// defaultCycles is how many stop/start and restart rounds the
	// lifecycle steps run; BRAID_PODMAN_CYCLES asks for more (a soak).
	defaultCycles = 3
)

func cycles(t *testing.T) int {
	if v := os.Getenv("BRAID_PODMAN_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BRAID_PODMAN_CYCLES=%q is not a positive number", v)
		}
		return n
	}
	return defaultCycles
}

// The containers' commands. busybox sh as PID 1 exits on SIGTERM only with
// a handler, so `podman stop` is quick and graceful. The server answers
// each connection with its hostname (the container's short ID).
var (
	sleeper = []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}
	server  = []string{"sh", "-c", "trap 'exit 0' TERM; nc -ll -p " + serverPort + " -e hostname & wait"}
)

// endpoint is the part of `braid endpoint list -o json` the suite reads.
type endpoint struct {
	ContainerID string     `json:"containerID"`
	IPv4        netip.Addr `json:"ipv4"`
	HostIfName  string     `json:"hostIfName"`
}

// stats are the suite's figures.
type stats struct {
	starts, stops, removals, leakChecks, leaks int
}

func TestPodman(t *testing.T) {
	begin := time.Now()
	n := harness.New(t).AddNode(t)
	e := newEngine(t, n)
	c := n.Conflist(t, conflist, harness.PluginKeysFor("sock-lb", map[string]any{"cgroupRoot": e.CgroupRoot}))
	e.AddNetwork(c)
	e.ImportBusybox(t)
	t.Logf("setup (node, private podman, image import): %v", time.Since(begin).Round(time.Millisecond))
	var st stats

	run := func(t *testing.T, name string, cmd []string) Container {
		t.Helper()
		args := append([]string{"run", "--detach", "--name", name, "--network", e.network,
			"--cgroup-parent", e.CgroupParent, image}, cmd...)
		e.Must(t, args...)
		st.starts++
		return e.Inspect(t, name)
	}
	// running is the containers that must be on the node now.
	var running []string
	check := func(t *testing.T) map[string]endpoint {
		t.Helper()
		st.leakChecks++
		eps, leaked := e.requireExactly(t, running...)
		if leaked {
			st.leaks++
		}
		return eps
	}

	t.Run("network ls and inspect", func(t *testing.T) {
		if names := strings.Fields(e.Must(t, "network", "ls", "--format", "{{.Name}}")); !slices.Contains(names, e.network) {
			t.Fatalf("podman network ls: %v, want %s among them", names, e.network)
		}
		var nets []struct {
			Name, Driver string
		}
		if err := json.Unmarshal([]byte(e.Must(t, "network", "inspect", e.network)), &nets); err != nil {
			t.Fatal(err)
		}
		// podman names a CNI network's driver after its first plugin.
		if len(nets) != 1 || nets[0].Name != e.network || nets[0].Driver != "veth-ebpf" {
			t.Errorf("podman network inspect %s: %+v", e.network, nets)
		}
	})

	var a, b Container
	if !t.Run("addressing", func(t *testing.T) {
		a, b = run(t, "a", sleeper), run(t, "b", server)
		running = []string{"a", "b"}
		eps := check(t)
		for _, ctr := range []Container{a, b} {
			ip := containerIP(t, e, ctr)
			if !n.PodCIDR.Contains(ip) {
				t.Errorf("%s has %s, not in the node's pod CIDR %s", ctr.Name, ip, n.PodCIDR)
			}
			nw := ctr.NetworkSettings.Networks[e.network]
			if nw.IPPrefixLen != 32 || nw.Gateway != "169.254.1.1" {
				t.Errorf("%s: prefix /%d via %s, want /32 via 169.254.1.1 (veth-ebpf)", ctr.Name, nw.IPPrefixLen, nw.Gateway)
			}
			if ep := eps[ctr.ID]; ep.IPv4 != ip {
				t.Errorf("braid endpoint of %s: %+v, want %s", ctr.Name, ep, ip)
			}
			// The container is where sock-lb balances.
			cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", ctr.State.Pid))
			if want := "0::" + e.CgroupParent + "/libpod-" + ctr.ID + "\n"; err != nil || !strings.Contains(string(cg), want) {
				t.Errorf("%s's cgroups: %q (%v), want the line %q", ctr.Name, cg, err, want)
			}
		}
		if containerIP(t, e, a) == containerIP(t, e, b) {
			t.Errorf("a and b share %s", containerIP(t, e, a))
		}
	}) {
		t.FailNow()
	}

	t.Run("container to container TCP", func(t *testing.T) {
		if got := e.RequireTCP(t, "a", containerIP(t, e, b).String(), serverPort); got != shortID(b) {
			t.Errorf("a reached %q at b's address, want b (%s)", got, shortID(b))
		}
	})

	// serveVIP points the service at b's current address.
	serveVIP := func(t *testing.T) {
		t.Helper()
		n.Braid(t, "service", "add", "web", "--vip", vip, "--port", vipPort,
			"--backend", containerIP(t, e, b).String()+":"+serverPort)
		repo, _ := harness.Repo()
		n.Braid(t, "sync", "--conflist", c.File, "--cni-path", filepath.Join(repo, "bin"))
	}
	t.Run("service VIP through sock-lb", func(t *testing.T) {
		serveVIP(t)
		if got := e.RequireTCP(t, "a", vip, vipPort); got != shortID(b) {
			t.Errorf("a reached %q at %s:%s, want b (%s)", got, vip, vipPort, shortID(b))
		}
		// Outside the containers' cgroup nothing is balanced, and the
		// VIP has no route: the answer above came from sock-lb.
		err := n.Do(func() error {
			conn, err := net.DialTimeout("tcp", vip+":"+vipPort, time.Second)
			if err == nil {
				conn.Close()
				return errors.New("connected")
			}
			return nil
		})
		if err != nil {
			t.Errorf("the node itself reached the VIP %s: %v", vip, err)
		}
	})

	t.Run("stop and start", func(t *testing.T) {
		var took []time.Duration
		defer func() { t.Logf("stop/start cycle times: %v", took) }()
		for i := range cycles(t) {
			began := time.Now()
			old := e.Inspect(t, "a")
			e.Must(t, "stop", "--time", stopTimeout, "a")
			st.stops++
			running = []string{"b"}
			check(t)
			if sb := old.NetworkSettings.SandboxKey; exists(sb) {
				t.Errorf("cycle %d: a's netns %s is still there after stop", i, sb)
			}
			e.Must(t, "start", "a")
			st.starts++
			running = []string{"a", "b"}
			a = e.Inspect(t, "a")
			check(t)
			if got := e.RequireTCP(t, "a", containerIP(t, e, b).String(), serverPort); got != shortID(b) {
				t.Fatalf("cycle %d: a reached %q at b's address after start", i, got)
			}
			took = append(took, time.Since(began).Round(time.Millisecond))
		}
	})

	t.Run("restart", func(t *testing.T) {
		for i := range cycles(t) {
			e.Must(t, "restart", "--time", stopTimeout, "b")
			st.stops++
			st.starts++
			b = e.Inspect(t, "b")
			check(t)
			serveVIP(t) // b may have a new address
			if got := e.RequireTCP(t, "a", vip, vipPort); got != shortID(b) {
				t.Fatalf("cycle %d: a reached %q at the VIP after b restarted", i, got)
			}
		}
	})

	t.Run("container that exits by itself", func(t *testing.T) {
		// Its network is torn down by `podman container cleanup`, which
		// conmon runs when the container exits. No podman command may run
		// until then: podman also cleans up an exited container it finds.
		// (It lives a second, so that `podman run` is long gone.)
		id := e.Must(t, "run", "--detach", "--name", "once", "--network", e.network,
			"--cgroup-parent", e.CgroupParent, image, "sleep", "1")
		st.starts++
		st.stops++
		deadline := time.Now().Add(10 * time.Second)
		for e.hasEndpoint(t, id) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if e.hasEndpoint(t, id) {
			t.Errorf("the exited container's endpoint is still there 10s later")
		}
		if code := e.Must(t, "wait", "once"); code != "0" {
			t.Errorf("podman wait once: exit code %s", code)
		}
		e.Inspect(t, "once")
		check(t)
		e.Must(t, "rm", "once")
		st.removals++

		// A foreground --rm container: ADD, the command, DEL and removal
		// all within one podman command. No --network: braid is podman's
		// default_network.
		out := e.Must(t, "run", "--rm", "--cgroup-parent", e.CgroupParent,
			image, "ip", "-4", "-o", "addr", "show", "eth0")
		st.starts++
		st.stops++
		st.removals++
		if f := strings.Fields(out); len(f) < 4 || !n.PodCIDR.Contains(netip.MustParsePrefix(f[3]).Addr()) {
			t.Errorf("ip addr in a --rm container: %q, want an address of %s", out, n.PodCIDR)
		}
		check(t)
	})

	t.Run("network rm", func(t *testing.T) {
		// podman refuses to remove a network containers use, and the
		// default network.
		if _, err := e.Run("network", "rm", e.network); err == nil || !strings.Contains(err.Error(), "associated containers") {
			t.Errorf("podman network rm with containers on it: %v, want a refusal", err)
		}
		e.Must(t, "rm", "--force", "--time", stopTimeout, "a", "b")
		st.stops += 2
		st.removals += 2
		running = nil
		check(t)
		if left := e.ContainerCgroups(); len(left) != 0 {
			t.Errorf("container cgroups left: %v", left)
		}
		if _, err := e.Run("network", "rm", e.network); err == nil || !strings.Contains(err.Error(), "default network") {
			t.Errorf("podman network rm of the default network: %v, want a refusal", err)
		}
		e.SetDefaultNetwork("")
		e.Must(t, "network", "rm", e.network)
		if names := strings.Fields(e.Must(t, "network", "ls", "--format", "{{.Name}}")); slices.Contains(names, e.network) {
			t.Errorf("podman network ls after rm: %v", names)
		}
		if exists(e.ConflistPath()) {
			t.Errorf("%s is still there after podman network rm", e.ConflistPath())
		}
		if _, err := e.Run("network", "inspect", e.network); err == nil {
			t.Error("podman network inspect succeeds after rm")
		}
	})

	t.Logf("podman figures: %d container starts, %d stops, %d removals, %d leak checks, leaks found: %d; total %v",
		st.starts, st.stops, st.removals, st.leakChecks, st.leaks,
		time.Since(begin).Round(time.Millisecond))
}

// containerIP is the container's address on the engine's network.
func containerIP(t testing.TB, e *engine, c Container) netip.Addr {
	t.Helper()
	ip, err := netip.ParseAddr(c.NetworkSettings.Networks[e.network].IPAddress)
	if err != nil {
		t.Fatalf("%s has no address on %s: %v", c.Name, e.network, err)
	}
	return ip
}

// shortID is a container's hostname.
func shortID(c Container) string { return c.ID[:12] }

// RequireTCP connects from container from to host:port with busybox nc and
// returns the first line the server sent; it retries for a few seconds (a
// server just started may not listen yet) and fails t after that.
func (e *engine) RequireTCP(t testing.TB, from, host, port string) string {
	t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err = e.Run("exec", from, "nc", "-w", "2", host, port)
		if err == nil && out != "" {
			return strings.SplitN(out, "\n", 2)[0]
		}
	}
	t.Fatalf("TCP from %s to %s:%s: %v (got %q)", from, host, port, err, out)
	return ""
}

// endpoints reads the node store's endpoints, by container ID.
func (e *engine) endpoints(t testing.TB) map[string]endpoint {
	t.Helper()
	var eps []endpoint
	e.node.BraidJSON(t, &eps, "endpoint", "list")
	m := map[string]endpoint{}
	for _, ep := range eps {
		m[ep.ContainerID] = ep
	}
	return m
}

func (e *engine) hasEndpoint(t testing.TB, id string) bool {
	_, ok := e.endpoints(t)[id]
	return ok
}

// requireExactly fails t unless the node holds the running containers'
// attachments and nothing else: store endpoints and allocations, endpoint
// map entries, per-pod pins, host veths, pod routes and neighbours
// (harness.FindLeaks), and on podman's side netns files and libcni cache
// entries. It returns the store's endpoints, and whether anything leaked.
func (e *engine) requireExactly(t testing.TB, names ...string) (map[string]endpoint, bool) {
	t.Helper()
	eps := e.endpoints(t)
	var keep []*harness.Pod
	var sandboxes, cache []string
	for _, name := range names {
		c := e.Inspect(t, name)
		if c.State.Status != "running" {
			t.Fatalf("container %s is %s, want running", name, c.State.Status)
		}
		ep, ok := eps[c.ID]
		if !ok {
			t.Errorf("container %s (%s) has no braid endpoint", name, c.ID)
			continue
		}
		sandboxes = append(sandboxes, c.NetworkSettings.SandboxKey)
		cache = append(cache, filepath.Join(cniCacheDir, e.network+"-"+c.ID+"-eth0"))
		keep = append(keep, &harness.Pod{ContainerID: c.ID, IP: ep.IPv4, IfName: "eth0",
			Result: &current.Result{Interfaces: []*current.Interface{{Name: ep.HostIfName}}}})
	}
	leaked := false
	if l := e.node.FindLeaks(t, keep...); !l.Empty() {
		t.Errorf("node holds more than %v: %s", names, l)
		leaked = true
	}
	live, entries := e.LiveSandboxes(), e.CNICacheEntries()
	for _, s := range [][]string{sandboxes, cache, live, entries} {
		slices.Sort(s)
	}
	if !slices.Equal(live, sandboxes) {
		t.Errorf("container netns files %v, want %v", live, sandboxes)
		leaked = true
	}
	if !slices.Equal(entries, cache) {
		t.Errorf("libcni cache entries %v, want %v", entries, cache)
		leaked = true
	}
	return eps, leaked
}

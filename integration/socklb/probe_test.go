package socklb

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/braid-cni/braid/integration/harness"
	"golang.org/x/sys/unix"
)

// TestProbeIsAPodProcess checks the harness's clients: a probe lives in the
// pod's netns and the node's cgroup, and both the probe and the cgroup are
// gone when the test ends.
func TestProbeIsAPodProcess(t *testing.T) {
	var cgroup string
	var pid int
	t.Run("probe", func(t *testing.T) {
		n := harness.New(t).AddNode(t)
		pod := n.Conflist(t, "native-lb.conflist", n.SockLB(t, nil)).AddPod(t, "client")
		cgroup = n.Cgroup(t)
		p := n.Probe(t, pod.NS)
		pid = p.Pid()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(cgroup, "/sys/fs/cgroup/unified")
		if !strings.Contains(string(b), "0::"+rel+"\n") {
			t.Errorf("probe %d's cgroups:\n%s\nwant 0::%s", pid, b, rel)
		}
		if got, want := inode(t, fmt.Sprintf("/proc/%d/ns/net", pid)), inode(t, pod.Path); got != want {
			t.Errorf("probe %d's netns is inode %d, the pod's %d", pid, got, want)
		}
	})
	if cgroup == "" {
		return // skipped
	}
	if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left after the test (%v)", cgroup, err)
	}
	if err := unix.Kill(pid, 0); err != unix.ESRCH {
		t.Errorf("probe %d still there after the test (%v)", pid, err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

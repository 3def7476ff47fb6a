package kit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/braid-cni/braid/internal/testenv"
	"golang.org/x/sys/unix"
)

// Lab is what one benchmark makes on the machine, named so that Sweep
// finds all of it again, even after a crash: network namespaces starting
// with Prefix (CNI networks too, for cnitool's cache), files under Root,
// and cgroups under Cgroup ("" for none).
type Lab struct {
	Prefix, Root, Cgroup string
}

// cniResults is where cnitool (libcni) caches results.
const cniResults = "/var/lib/cni/results"

// Sweep removes everything of the lab: the processes in its cgroups and
// the cgroups, its netns (with every interface and rule in them), mounts
// under Root and Root itself, and cnitool's cached results of its
// networks. Problems are printed, not returned: a sweep does what it can.
func (l Lab) Sweep() {
	ctx := context.Background()
	if l.Cgroup != "" {
		if err := testenv.RemoveCgroup(l.Cgroup); err != nil {
			fmt.Fprintf(os.Stderr, "sweep: %v\n", err)
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.Prefix) {
			if err := Sh(ctx, "ip", "netns", "del", e.Name()); err != nil {
				fmt.Fprintf(os.Stderr, "sweep: %v\n", err)
			}
		}
	}
	mounts := mountsUnder(l.Root)
	slices.Reverse(mounts) // innermost first
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			fmt.Fprintf(os.Stderr, "sweep: umount %s: %v\n", m, err)
		}
	}
	if err := os.RemoveAll(l.Root); err != nil {
		fmt.Fprintf(os.Stderr, "sweep: %v\n", err)
	}
	cached, _ := filepath.Glob(filepath.Join(cniResults, l.Prefix+"*"))
	for _, f := range cached {
		_ = os.Remove(f)
	}
}

// mountsUnder lists mount points at or below dir, in mount order.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// Report is a benchmark's result, for the terminal and for its section of
// BENCHMARKS.md.
type Report struct{ Text, Markdown string }

// Main is every benchmark command's frame: it refuses to run but as root,
// sweeps the leftovers of an interrupted run, gives the session's
// autogroup the nice value nice (SetAutogroupNice), runs bench with a context
// the first SIGINT or SIGTERM cancels (later ones are swallowed, so the
// teardown always completes), prints the report and, when out is set,
// writes its Markdown into out's section bench/<name>. It returns the exit
// code.
func Main(name string, lab Lab, out string, nice int, bench func(context.Context) (Report, error)) int {
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: must run as root (it creates network namespaces, bpffs mounts and cgroups)\n", name)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab.Sweep()
	restore, err := SetAutogroupNice(nice)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer restore()
	rep, err := bench(ctx)
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "%s: interrupted; topology removed\n", name)
		return 130
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Print(rep.Text)
	if out != "" {
		if err := PutSection(out, "bench/"+name, rep.Markdown); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 1
		}
		fmt.Printf("\nwrote %s\n", out)
	}
	return 0
}

// Invocation is the command that produced this run of bench/<name>, as a
// user would type it (under make, as make bench ran it).
func Invocation(name string) string {
	cmd := strings.TrimSpace("go run ./bench/" + name + " " + strings.Join(os.Args[1:], " "))
	if os.Getenv("MAKELEVEL") != "" && strings.Join(os.Args[1:], " ") == "-out BENCHMARKS.md" {
		return "make bench  # " + cmd
	}
	return cmd
}

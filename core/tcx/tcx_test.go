package tcx

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/braid-cni/braid/internal/testenv"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachHead puts a program first and keeps it first: a pinned link that
// another program got ahead of is replaced by one at the head (the old one
// detached, the pin moved), with a new program or the same one; VerifyFirst
// says when it is not first.
func TestAttachHead(t *testing.T) {
	pin := filepath.Join(testenv.BPFFS(t), "lo_ingress")
	errc := make(chan error, 1)
	go func() {
		// A throwaway thread in a netns of its own: never unlocked, so the
		// runtime discards it when this goroutine ends.
		runtime.LockOSThread()
		errc <- headScenario(pin)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func headScenario(pin string) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return err
	}
	progs := map[string]*ebpf.Program{}
	for _, name := range []string{"tail", "mine", "mine_v2", "interloper"} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
		if err != nil {
			return err
		}
		defer p.Close()
		progs[name] = p
	}
	tail, err := link.AttachTCX(link.TCXOptions{Interface: 1, Program: progs["tail"], Attach: Ingress})
	if err != nil {
		return err
	}
	defer tail.Close()
	order := func(want ...string) error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: Ingress})
		if err != nil {
			return err
		}
		var got []string
		for _, p := range res.Programs {
			for name, prog := range progs {
				if info, _ := prog.Info(); info != nil {
					if id, _ := info.ID(); id == p.ID {
						got = append(got, name)
					}
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("programs on the hook %v, want %v", got, want)
		}
		return nil
	}
	steps := []struct {
		what      string
		prog      string
		wantMoved bool
		want      []string
	}{
		{"new link, behind another program: at the head", "mine", false, []string{"mine", "tail"}},
		{"already first: updated in place", "mine_v2", false, []string{"mine_v2", "tail"}},
		{"another program got ahead: a new program moved to the head", "mine", true, []string{"mine", "interloper", "tail"}},
		{"another program got ahead: the same program moved to the head", "mine", true, []string{"mine", "interloper", "tail"}},
	}
	var interloper link.Link
	defer func() {
		if interloper != nil {
			interloper.Close()
		}
	}()
	for i, s := range steps {
		if s.wantMoved {
			if interloper != nil {
				interloper.Close()
			}
			if interloper, err = link.AttachTCX(link.TCXOptions{Interface: 1, Program: progs["interloper"], Attach: Ingress, Anchor: link.Head()}); err != nil {
				return err
			}
			if err := VerifyFirst(pin, 1, Ingress); err == nil {
				return fmt.Errorf("%s: VerifyFirst passed with another program ahead", s.what)
			}
		}
		moved, err := AttachHead(1, Ingress, progs[s.prog], pin)
		if err != nil {
			return fmt.Errorf("step %d, %s: %w", i, s.what, err)
		}
		if moved != s.wantMoved {
			return fmt.Errorf("%s: moved %v, want %v", s.what, moved, s.wantMoved)
		}
		if err := order(s.want...); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		if err := VerifyFirst(pin, 1, Ingress); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return Detach(pin)
}

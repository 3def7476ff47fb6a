package harness

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
)

// PluginVersions is what plugin answers to VERSION: the CNI spec versions
// it speaks.
func PluginVersions(t testing.TB, plugin string) []string {
	t.Helper()
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{binDir(repo), toolsCNIDir(repo)}
	path, err := invoke.FindInPath(plugin, paths)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	info, err := invoke.GetVersionInfo(ctx, path, nil)
	if err != nil {
		t.Fatalf("%s VERSION: %v", plugin, err)
	}
	return info.SupportedVersions()
}

// RequireVersions fails t unless plugin's VERSION lists every one of want.
func RequireVersions(t testing.TB, plugin string, want ...string) {
	t.Helper()
	got := PluginVersions(t, plugin)
	for _, v := range want {
		if !slices.Contains(got, v) {
			t.Errorf("%s VERSION lists %s, want %s among them", plugin, strings.Join(got, " "), v)
		}
	}
}

// IsMountPoint reports whether something is mounted at dir.
func IsMountPoint(dir string) bool {
	mounts, err := mountsUnder(dir)
	return err == nil && slices.Contains(mounts, dir)
}

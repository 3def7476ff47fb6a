package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// With the Kubernetes datastore, the commands that change services or
// nodes say where that is done instead of writing a store the agent
// overwrites; they answer without reaching the API server.
func TestKubernetesIsReadOnly(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// An API server nobody listens at: nothing may need it.
	const conf = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(kubeconfig, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"service", "add", "web", "--vip", "10.96.0.10", "--port", "80"}, "Services are changed with kubectl"},
		{[]string{"service", "del", "web"}, "Services are changed with kubectl"},
		{[]string{"service", "backends", "set", "web", "--backend", "10.244.1.5:80"}, "Services are changed with kubectl"},
		{[]string{"node", "add", "n2", "--node-ip", "198.18.0.2", "--pod-cidr", "198.19.2.0/24"}, "nodes join by running the kubelet"},
		{[]string{"node", "del", "n2"}, "nodes join by running the kubelet"},
	} {
		cmd := rootCmd()
		cmd.SetArgs(append(tc.args, "--kubeconfig", kubeconfig, "--state-dir", dir))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "read-only datastore") {
			t.Errorf("braid %s: %v; want it to say %q", strings.Join(tc.args, " "), err, tc.says)
		}
	}
}

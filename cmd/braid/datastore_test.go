package main

import (
	"strings"
	"testing"
)

// The datastore a command works on comes from its flags, once; flags that
// contradict each other are refused, naming them.
func TestChooseDatastore(t *testing.T) {
	for _, tc := range []struct {
		d    datastoreFlags
		want string // the datastore, or what the error says
	}{
		{datastoreFlags{}, dsLocal},
		{datastoreFlags{etcd: etcdFlags{endpoints: []string{"http://e:2379"}}}, dsEtcd},
		{datastoreFlags{kubeconfig: "/k"}, dsKubernetes},
		{datastoreFlags{kind: dsKubernetes}, dsKubernetes},
		{datastoreFlags{kind: dsLocal}, dsLocal},
		{datastoreFlags{kind: dsEtcd}, "--datastore etcd needs --etcd-endpoints"},
		{datastoreFlags{kind: dsLocal, kubeconfig: "/k"}, "--kubeconfig is for --datastore kubernetes, not local"},
		{datastoreFlags{kubeconfig: "/k", etcd: etcdFlags{endpoints: []string{"http://e:2379"}}}, "--etcd-endpoints is for --datastore etcd, not kubernetes"},
		{datastoreFlags{kind: "consul"}, `--datastore must be local, etcd or kubernetes, not "consul"`},
	} {
		got, err := tc.d.choose()
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.d, got, tc.want)
		}
	}
}

// A node's flags are checked by store.Validate, and its refusal names the
// flag, as `braid node init` and `braid node add` print it.
func TestParseNodeNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name, ip, cidr, device, says string
	}{
		{"n 1", "198.18.0.1", "198.19.1.0/24", "eth0", `--name "n 1" is not a node name`},
		{"n1", "2001:db8::1", "198.19.1.0/24", "eth0", "--node-ip 2001:db8::1 is not an IPv4 address"},
		{"n1", "198.18.0.1", "198.19.1.1/24", "eth0", "--pod-cidr 198.19.1.1/24 has host bits set; did you mean 198.19.1.0/24?"},
		{"n1", "198.18.0.1", "198.18.0.0/24", "eth0", "--pod-cidr 198.18.0.0/24 holds the node's own IP 198.18.0.1"},
		{"n1", "198.18.0.1", "198.19.1.0/24", "eth0:1", `--device "eth0:1" is not an interface name`},
	} {
		_, err := parseNode(tc.name, tc.ip, tc.cidr, tc.device)
		if err == nil || !strings.HasPrefix(err.Error(), tc.says) {
			t.Errorf("parseNode(%q, %q, %q, %q): %v; want %q", tc.name, tc.ip, tc.cidr, tc.device, err, tc.says)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/braid-cni/braid/core/datastore"
	"github.com/braid-cni/braid/core/store"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func serviceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "services balanced by sock-lb and dsr"}
	backends := &cobra.Command{Use: "backends", Short: "a service's backends"}
	backends.AddCommand(serviceBackendsSetCmd(g))
	cmd.AddCommand(serviceAddCmd(g), serviceDelCmd(g), serviceListCmd(g), serviceApplyCmd(g), backends)
	return cmd
}

func serviceAddCmd(g *globals) *cobra.Command {
	var s store.Service
	var vip, backends, nodePortRange string
	var port, nodePort uint16
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "add (or replace) a service",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var err error
			s.Name, s.Port, s.NodePort = args[0], port, nodePort
			s.Protocol = strings.ToLower(s.Protocol)
			if s.VIP, err = netip.ParseAddr(vip); err != nil {
				return fmt.Errorf("--vip %q is not an IPv4 address", vip)
			}
			if s.Backends, err = parseBackends(backends); err != nil {
				return err
			}
			if err := checkNodePorts(nodePortRange, s); err != nil {
				return err
			}
			return g.putServices(s)
		},
	}
	f := cmd.Flags()
	f.StringVar(&vip, "vip", "", "the service's virtual IPv4 address (required)")
	f.Uint16Var(&port, "port", 0, "the service port (required)")
	f.StringVar(&s.Protocol, "protocol", "tcp", "tcp or udp")
	f.StringVar(&backends, "backend", "", "backends as IP:PORT[,IP:PORT...]")
	f.StringVar(&s.Type, "type", store.ClusterIP, "ClusterIP or NodePort")
	f.Uint16Var(&nodePort, "node-port", 0, "node port of a NodePort service")
	nodePortRangeFlag(f, &nodePortRange)
	f.StringVar(&s.ExternalTrafficPolicy, "external-traffic-policy", "", "Cluster or Local (NodePort)")
	f.Uint32Var(&s.AffinityTimeout, "affinity-timeout", 0, "seconds a client (a pod's network namespace, or the node's) keeps its backend since its last connect; 0: none")
	_ = cmd.MarkFlagRequired("vip")
	_ = cmd.MarkFlagRequired("port")
	return cmd
}

func serviceBackendsSetCmd(g *globals) *cobra.Command {
	var backends string
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "replace a service's backends (new connections only; established ones are untouched)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			bs, err := parseBackends(backends)
			if err != nil {
				return err
			}
			return g.withCluster(func(ctx context.Context, c *cluster) error {
				err := c.UpdateService(ctx, args[0], func(s *store.Service) error { s.Backends = bs; return nil })
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout(), "service %s: %d backends; %s\n", args[0], len(bs), c.next)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&backends, "backend", "", "backends as IP:PORT[,IP:PORT...] (empty: none)")
	return cmd
}

func serviceDelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "del NAME",
		Short: "remove a service",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return g.withCluster(func(ctx context.Context, c *cluster) error {
				existed, err := c.DeleteService(ctx, args[0])
				if err != nil {
					return err
				}
				if !existed {
					return datastore.NoService(args[0])
				}
				fmt.Fprintf(stdout(), "service %s removed; %s\n", args[0], c.next)
				return nil
			})
		},
	}
}

func serviceListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "list services (-o json prints what `braid service apply -f` reads)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var svcs []store.Service
			err := g.withCluster(func(ctx context.Context, c *cluster) (err error) {
				svcs, err = c.Services(ctx)
				return err
			})
			if err != nil {
				return err
			}
			if svcs == nil {
				svcs = []store.Service{}
			}
			t := table{header: []string{"NAME", "TYPE", "VIP", "PORT", "PROTO", "NODE-PORT", "BACKENDS"}, json: svcs}
			for _, s := range svcs {
				var bs []string
				for _, b := range s.Backends {
					bs = append(bs, b.String())
				}
				np := ""
				if s.NodePort != 0 {
					np = strconv.Itoa(int(s.NodePort))
				}
				t.rows = append(t.rows, []string{s.Name, s.Type, s.VIP.String(), strconv.Itoa(int(s.Port)), s.Protocol, np, strings.Join(bs, ",")})
			}
			return g.print(stdout(), t)
		},
	}
}

func serviceApplyCmd(g *globals) *cobra.Command {
	var file, nodePortRange string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "add or replace many services at once, from the JSON `braid service list -o json` prints",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			raw, err := readFileOrStdin(file)
			if err != nil {
				return err
			}
			var svcs []store.Service
			if err := json.Unmarshal(raw, &svcs); err != nil {
				return fmt.Errorf("%s: not a JSON list of services: %w", file, err)
			}
			if err := checkNodePorts(nodePortRange, svcs...); err != nil {
				return err
			}
			return g.putServices(svcs...)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "JSON file (- for stdin)")
	nodePortRangeFlag(cmd.Flags(), &nodePortRange)
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// putServices stores all of svcs in one transaction: all or none. The
// datastore checks them against the services it holds and the maps'
// capacity.
func (g *globals) putServices(svcs ...store.Service) error {
	return g.withCluster(func(ctx context.Context, c *cluster) error {
		if err := c.PutServices(ctx, svcs...); err != nil {
			return err
		}
		if len(svcs) == 1 {
			fmt.Fprintf(stdout(), "service %s: %s:%d/%s, %d backends; %s\n", svcs[0].Name, svcs[0].VIP, svcs[0].Port, svcs[0].Protocol, len(svcs[0].Backends), c.next)
		} else {
			fmt.Fprintf(stdout(), "%d services applied; %s\n", len(svcs), c.next)
		}
		return nil
	})
}

func parseBackends(s string) ([]store.Backend, error) {
	out := []store.Backend{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(part))
		if err != nil || !ap.Addr().Is4() {
			return nil, fmt.Errorf("--backend %q is not IPv4:PORT", part)
		}
		out = append(out, store.Backend{IP: ap.Addr(), Port: ap.Port()})
	}
	return out, nil
}

func readFileOrStdin(path string) ([]byte, error) {
	if path == "-" {
		return readAllLimited(os.Stdin)
	}
	return os.ReadFile(path)
}

func nodePortRangeFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "node-port-range", store.DefaultNodePortRange, "the range node ports must be in (the dsr plugin's nodePortRange)")
}

// checkNodePorts refuses a NodePort service whose node port is outside
// portRange ("first-last"), which must match the dsr plugin's
// nodePortRange: dsr does not serve (and reports) services outside it.
func checkNodePorts(portRange string, svcs ...store.Service) error {
	r, err := store.ParsePortRange(portRange)
	if err != nil {
		return fmt.Errorf("--node-port-range: %w", err)
	}
	for _, s := range svcs {
		if s.Type == store.NodePort && s.NodePort != 0 && !r.Contains(s.NodePort) {
			return fmt.Errorf("service %s: node port %d is outside the node-port range %s (see --node-port-range)", s.Name, s.NodePort, r)
		}
	}
	return nil
}

// Package datapathrpc is the datapath plugin interface: the gRPC service in
// datapath.proto (generated code alongside) and the hashicorp/go-plugin
// glue through which `braid agent` launches plugin binaries and a plugin
// binary serves it. A binary knows it was launched this way by the
// handshake's magic cookie in its environment (Launched).
package datapathrpc

import (
	"context"
	"os"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is what the agent and a plugin binary must agree on. The
// cookie is not a secret: it keeps a binary run by hand, or by a container
// runtime, from waiting for a gRPC client that never comes.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BRAID_DATAPATH_PLUGIN",
	MagicCookieValue: "5b1e0f3c-braid-datapath-v1",
}

// Name is the single plugin every binary serves under go-plugin.
const Name = "datapath"

// Plugins is the plugin set a client dispenses from.
var Plugins = goplugin.PluginSet{Name: &GRPCPlugin{}}

// Launched reports whether this process was started by a go-plugin client
// with braid's handshake.
func Launched() bool {
	return os.Getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}

// Serve serves impl until the client goes away. AutoMTLS is negotiated by
// go-plugin when the client asks for it (braid agent always does).
func Serve(impl DatapathServer) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         goplugin.PluginSet{Name: &GRPCPlugin{Impl: impl}},
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}

// GRPCPlugin adapts the Datapath service to go-plugin; Impl is set on the
// server side only.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl DatapathServer
}

// GRPCServer registers the service on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	RegisterDatapathServer(s, p.Impl)
	return nil
}

// GRPCClient returns a DatapathClient on the agent's side.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewDatapathClient(c), nil
}

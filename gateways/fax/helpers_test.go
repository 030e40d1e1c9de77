package fax_test

import (
	"net"

	"github.com/uims/uims/gateways/fax/hylafax"
	"github.com/uims/uims/gateways/fax/hylafax/hfaxdtest"
)

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func hylafaxConfig(srv *hfaxdtest.Server) hylafax.Config {
	return hylafax.Config{Addr: srv.Addr, User: srv.User}
}

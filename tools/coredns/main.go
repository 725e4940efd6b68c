// Command coredns is CoreDNS of the pinned release with only the plugins the
// cluster's Corefile uses. Leaving out the cloud backends (route53, azure,
// clouddns, ...) keeps the build small, and leaving out `forward` means the
// cluster DNS cannot send a query off this machine even if misconfigured.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// Same relative order as upstream's generated list: a plugin sees the effects
// of every plugin after it.
var directives = []string{
	"reload", "ready", "health", "errors", "log", "loadbalance",
	"cache", "hosts", "kubernetes", "loop",
}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}

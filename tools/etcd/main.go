// Command etcd is the etcd server of the pinned release. The upstream server
// module carries replace directives, so `go install` of it is refused; this
// module requires it like any library and calls its entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

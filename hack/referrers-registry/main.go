// referrers-registry serves go-containerregistry's in-memory registry with the OCI 1.1
// referrers API switched on, which neither `crane registry serve` nor its cmd/registry does.
// docker-registry 2.8 answers the API with 404, so without this the tests would only ever
// reach cosign's bundles through the fallback tag.
//
// It prints "listening on HOST:PORT" once it accepts connections, so a test can start it on
// port 0 and read the port it got.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "where to listen (loopback by default)")
	flag.Parse()
	listener, err := net.Listen("tcp", *address)
	if err != nil {
		log.Fatalf("listen %s: %v", *address, err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", listener.Addr())
	server := &http.Server{
		Handler:           registry.New(registry.WithReferrersSupport(true)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Fatal(server.Serve(listener))
}

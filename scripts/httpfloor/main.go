// Command httpfloor is the least an HTTP server in Go does per request: read the body
// and answer a fixed reply the size of an OIP infer response, with no decoding and no
// model. scripts/serve-bench.sh puts the same wrk load on it beside `fedq serve`, so
// that the bound net/http and loopback TCP set on served throughput is measured in the
// same run.
//
//	go run ./scripts/httpfloor 127.0.0.1:18100
//	go run ./scripts/httpfloor -h2c 127.0.0.1:18100   # also HTTP/2 without TLS (for h2load)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
)

func main() {
	h2c := flag.Bool("h2c", false, "also serve HTTP/2 without TLS (prior knowledge)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: httpfloor [-h2c] HOST:PORT")
		os.Exit(2)
	}
	reply := []byte(`{"model_name":"2nn","model_version":"0","outputs":[{"name":"logits","datatype":"FP32","shape":[1,10],"data":[0.6646676,-1.7310588,-0.8740659,-0.8799405,0.31084734,0.73157835,0.68387926,-1.3723196,1.6465014,0.4748251]},{"name":"label","datatype":"INT64","shape":[1],"data":[8]}]}`)
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		buf := bufs.Get().(*bytes.Buffer)
		defer bufs.Put(buf)
		buf.Reset()
		if _, err := buf.ReadFrom(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(reply)
	})
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(*h2c)
	srv := &http.Server{Addr: flag.Arg(0), Protocols: &protocols}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "httpfloor:", err)
		os.Exit(1)
	}
}

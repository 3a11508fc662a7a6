// Command floors serves an OIP infer request's fixed reply with the fastest HTTP servers Go
// has, doing nothing but HTTP/1.1 framing: valyala/fasthttp, and a gnet event loop (epoll,
// no goroutine per connection) that parses only the request line's end and Content-Length.
// scripts/serve-bench.sh loads them beside scripts/httpfloor (net/http) and `fedq serve`, so
// that the ceiling any Go server reaches on the host under the same wrk load is measured in
// the same run. It is its own module, so that fedq does not depend on either server.
//
//	go run . -engine fasthttp 127.0.0.1:18100
//	go run . -engine gnet 127.0.0.1:18100
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

// reply is an infer response for one image of the 2nn, as fedq serve writes it.
var reply = []byte(`{"model_name":"2nn","model_version":"0","outputs":[{"name":"logits","datatype":"FP32","shape":[1,10],"data":[0.6646676,-1.7310588,-0.8740659,-0.8799405,0.31084734,0.73157835,0.68387926,-1.3723196,1.6465014,0.4748251]},{"name":"label","datatype":"INT64","shape":[1],"data":[8]}]}`)

func main() {
	engine := flag.String("engine", "fasthttp", "fasthttp or gnet")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: floors [-engine fasthttp|gnet] HOST:PORT")
		os.Exit(2)
	}
	var err error
	switch *engine {
	case "fasthttp":
		err = fasthttp.ListenAndServe(flag.Arg(0), func(ctx *fasthttp.RequestCtx) {
			_ = ctx.PostBody()
			ctx.SetContentType("application/json")
			ctx.SetBody(reply)
		})
	case "gnet":
		err = gnet.Run(newLoop(), "tcp://"+flag.Arg(0), gnet.WithMulticore(true))
	default:
		err = fmt.Errorf("unknown engine %q (fasthttp or gnet)", *engine)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floors:", err)
		os.Exit(1)
	}
}

// loop answers each complete request in a connection's input with the fixed reply.
type loop struct {
	gnet.BuiltinEventEngine
	response []byte
}

func newLoop() *loop {
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(reply)) + "\r\n\r\n"
	return &loop{response: append([]byte(head), reply...)}
}

var (
	headEnd       = []byte("\r\n\r\n")
	contentLength = []byte("\r\nContent-Length: ")
)

// OnTraffic consumes every whole request (head, then Content-Length bytes of body) and
// writes one reply for each; a partial request waits in the buffer for more input.
func (l *loop) OnTraffic(c gnet.Conn) gnet.Action {
	in, _ := c.Peek(-1)
	used, n := 0, 0
	for {
		b := in[used:]
		end := bytes.Index(b, headEnd)
		if end < 0 {
			break
		}
		body := 0
		if i := bytes.Index(b[:end+2], contentLength); i >= 0 {
			v := b[i+len(contentLength) : end+2]
			v = v[:bytes.IndexByte(v, '\r')]
			var err error
			if body, err = strconv.Atoi(string(v)); err != nil || body < 0 {
				return gnet.Close
			}
		}
		if len(b) < end+len(headEnd)+body {
			break
		}
		used += end + len(headEnd) + body
		n++
	}
	if _, err := c.Discard(used); err != nil {
		return gnet.Close
	}
	if n == 0 {
		return gnet.None
	}
	out := make([]byte, 0, n*len(l.response))
	for range n {
		out = append(out, l.response...)
	}
	if _, err := c.Write(out); err != nil {
		return gnet.Close
	}
	return gnet.None
}

package serve

import (
	"math"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientLimiter limits each client, keyed by remote IP, to a token bucket. Buckets idle
// for longer than idle are forgotten when the table grows past sweepAt entries, so a
// scan over many addresses cannot grow it without bound.
type clientLimiter struct {
	limit   rate.Limit
	burst   int
	idle    time.Duration
	sweepAt int

	mu      sync.Mutex
	clients map[string]*clientBucket
}

type clientBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newClientLimiter allows perSecond requests a second per client, with bursts of burst
// (at least one, and at least perSecond rounded up when burst is 0).
func newClientLimiter(perSecond float64, burst int) *clientLimiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &clientLimiter{limit: rate.Limit(perSecond), burst: burst, idle: time.Minute, sweepAt: 4096,
		clients: map[string]*clientBucket{}}
}

// allow reports whether the client at remoteAddr (host:port) may make a request now.
func (l *clientLimiter) allow(remoteAddr string, now time.Time) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[host]
	if !ok {
		if len(l.clients) >= l.sweepAt {
			for k, c := range l.clients {
				if now.Sub(c.seen) > l.idle {
					delete(l.clients, k)
				}
			}
		}
		b = &clientBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[host] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

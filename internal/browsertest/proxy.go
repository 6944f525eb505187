package browsertest

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// refusingProxy is the browser's proxy: every request that reaches it is
// for a host beyond loopback, and gets 403 after its host is recorded.
type refusingProxy struct {
	addr string
	srv  *http.Server
	mu   sync.Mutex
	seen []string
}

// startRefusingProxy listens on a free 127.0.0.1 port until t ends.
func startRefusingProxy(t testing.TB) *refusingProxy {
	t.Helper()
	p, err := listenRefusingProxy()
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	t.Cleanup(p.close)
	return p
}

// listenRefusingProxy listens on a free 127.0.0.1 port until close.
func listenRefusingProxy() (*refusingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listener: %w", err)
	}
	p := &refusingProxy{addr: ln.Addr().String()}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // ends with close
	return p, nil
}

// close stops the proxy.
func (p *refusingProxy) close() { p.srv.Close() }

// ServeHTTP refuses the request (a CONNECT for https, a plain request for
// http) and records its host.
func (p *refusingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Host)
	p.mu.Unlock()
	http.Error(w, "browsertest: only loopback is reachable", http.StatusForbidden)
}

// hosts returns the refused hosts in order.
func (p *refusingProxy) hosts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

package master

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
)

// tlsListener serves TLS as libprocess does with LIBPROCESS_SSL_ENABLED:
// only TLS, or with downgrade (LIBPROCESS_SSL_SUPPORT_DOWNGRADE) TLS and
// plain connections on the same port, told apart by their first byte (a
// TLS handshake record starts with 0x16).
func tlsListener(ln net.Listener, cfg *tls.Config, downgrade bool) net.Listener {
	if !downgrade {
		return tls.NewListener(ln, cfg)
	}
	return sniffListener{Listener: ln, cfg: cfg}
}

type sniffListener struct {
	net.Listener
	cfg *tls.Config
}

// Accept does not read: the first Read or Write of the connection (in the
// server's goroutine for it) decides, so a silent client holds no one up.
func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, cfg: l.cfg}, nil
}

type sniffConn struct {
	net.Conn
	cfg  *tls.Config
	once sync.Once
	rw   net.Conn
}

// peeked reads first what the sniff buffered.
type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p peeked) Read(b []byte) (int, error) { return p.r.Read(b) }

func (c *sniffConn) sniff() net.Conn {
	c.once.Do(func() {
		br := bufio.NewReader(c.Conn)
		first, err := br.Peek(1)
		p := peeked{Conn: c.Conn, r: br}
		if err == nil && first[0] == 0x16 {
			c.rw = tls.Server(p, c.cfg)
			return
		}
		c.rw = p
	})
	return c.rw
}

func (c *sniffConn) Read(b []byte) (int, error)  { return c.sniff().Read(b) }
func (c *sniffConn) Write(b []byte) (int, error) { return c.sniff().Write(b) }

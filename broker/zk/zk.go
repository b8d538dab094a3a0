// Package zk is the broker's use of ZooKeeper: detecting the leading Mesos
// master, keeping the framework id across restarts, and electing one leader
// among broker replicas. Everything here must survive a process restart,
// which is why it lives in ZooKeeper and not in memory.
package zk

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"k8s.io/klog/v2"
)

// DefaultSessionTimeout matches the Mesos masters' --zk_session_timeout.
const DefaultSessionTimeout = 10 * time.Second

// ParseURL splits zk://[auth@]host1:port,host2:port/path into servers and a
// cleaned znode path.
func ParseURL(raw string) (servers []string, znode string, err error) {
	if !strings.HasPrefix(raw, "zk://") {
		return nil, "", fmt.Errorf("ZooKeeper URL %q must start with zk://", raw)
	}
	// url.Parse refuses several hosts when one lacks a port: split by hand.
	rest := strings.TrimPrefix(raw, "zk://")
	if at := strings.LastIndex(rest, "@"); at >= 0 && at < strings.Index(rest+"/", "/") {
		rest = rest[at+1:]
	}
	hosts, p, _ := strings.Cut(rest, "/")
	if hosts == "" {
		return nil, "", fmt.Errorf("ZooKeeper URL %q names no servers", raw)
	}
	if p == "" {
		return nil, "", fmt.Errorf("ZooKeeper URL %q names no znode path (zk://host:2181/mesos)", raw)
	}
	for _, s := range strings.Split(hosts, ",") {
		if s == "" {
			return nil, "", fmt.Errorf("ZooKeeper URL %q has an empty server", raw)
		}
		if !strings.Contains(s, ":") {
			s += ":2181"
		}
		servers = append(servers, s)
	}
	return servers, path.Clean("/" + p), nil
}

// Session is one ZooKeeper session. go-zookeeper reconnects by itself, but a
// session that expired took its ephemeral znodes (a broker's leadership)
// with it: Expired tells the owners so. NextSuspension tells them sooner:
// while the connection is down the session may already have expired on the
// servers (go-zookeeper only learns it once it reconnects), and another
// candidate may lead.
type Session struct {
	*gozk.Conn
	expired chan struct{}
	once    sync.Once
	auth    *Auth // nil: znodes are created open to all

	mu sync.Mutex
	// down: the connection is lost (or the session ended) right now.
	down bool
	// suspended are the channels NextSuspension handed out.
	suspended []chan struct{}
}

type klogLogger struct{}

func (klogLogger) Printf(format string, args ...any) { klog.V(4).Infof("zookeeper: "+format, args...) }

// Connect opens a session and returns once it is established, so that the
// first requests do not fail while the handshake is still under way.
func Connect(ctx context.Context, servers []string, timeout time.Duration) (*Session, error) {
	if timeout <= 0 {
		timeout = DefaultSessionTimeout
	}
	conn, events, err := gozk.Connect(servers, timeout, gozk.WithLogger(klogLogger{}))
	if err != nil {
		return nil, fmt.Errorf("connecting to ZooKeeper %v: %w", servers, err)
	}
	s := &Session{Conn: conn, expired: make(chan struct{})}
	for {
		select {
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("connecting to ZooKeeper %v: %w", servers, ctx.Err())
		case ev, ok := <-events:
			if !ok {
				return nil, fmt.Errorf("connecting to ZooKeeper %v: connection closed", servers)
			}
			if ev.State == gozk.StateHasSession {
				go s.watch(events)
				return s, nil
			}
		}
	}
}

func (s *Session) watch(events <-chan gozk.Event) {
	for ev := range events {
		switch ev.State {
		case gozk.StateDisconnected:
			s.setDown(true, "connection lost")
		case gozk.StateHasSession:
			s.setDown(false, "")
		case gozk.StateExpired:
			klog.InfoS("ZooKeeper session expired")
			s.setDown(true, "session expired")
			s.once.Do(func() { close(s.expired) })
		}
	}
	s.setDown(true, "connection closed")
	s.once.Do(func() { close(s.expired) })
}

func (s *Session) setDown(down bool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if !down {
		return
	}
	if len(s.suspended) > 0 {
		klog.InfoS("ZooKeeper session suspended: what was decided on it (leadership) ends now", "reason", why)
	}
	for _, ch := range s.suspended {
		close(ch)
	}
	s.suspended = nil
}

// NextSuspension returns a channel that is closed the next time the
// connection is lost or the session ends (at once if it is down now), even
// if go-zookeeper then reconnects to the same session: what was decided
// while connected, such as leadership, cannot be trusted any more.
func (s *Session) NextSuspension() <-chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		close(ch)
		return ch
	}
	s.suspended = append(s.suspended, ch)
	return ch
}

// Expired is closed when the session expired (or the connection was closed).
func (s *Session) Expired() <-chan struct{} { return s.expired }

// ensurePath creates p and its parents as persistent znodes.
func ensurePath(s *Session, p string) error {
	c := s.Conn
	if p == "/" || p == "" {
		return nil
	}
	if ok, _, err := c.Exists(p); err != nil {
		return fmt.Errorf("checking znode %s: %w", p, err)
	} else if ok {
		return nil
	}
	if err := ensurePath(s, path.Dir(p)); err != nil {
		return err
	}
	if _, err := c.Create(p, nil, 0, s.acl()); err != nil && !errors.Is(err, gozk.ErrNodeExists) {
		return fmt.Errorf("creating znode %s: %w", p, err)
	}
	return nil
}

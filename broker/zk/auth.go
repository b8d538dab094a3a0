package zk

import (
	"context"
	"fmt"
	"strings"
	"time"

	gozk "github.com/go-zookeeper/zk"
)

// Auth is a ZooKeeper digest identity (user:password). A session with one
// creates k8sm's znodes readable and writable by that identity alone; without
// one they are open to anyone who reaches ZooKeeper, who could then delete
// the framework id (and with it every pod, once the failover timeout runs
// out) or block the broker election.
type Auth struct{ User, Password string }

// ParseAuth reads "user:password".
func ParseAuth(s string) (*Auth, error) {
	user, pass, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || user == "" || pass == "" {
		return nil, fmt.Errorf("ZooKeeper credentials must be user:password (digest authentication)")
	}
	return &Auth{User: user, Password: pass}, nil
}

// URLAuth returns the credentials of zk://user:password@host:2181/path, nil
// when the URL has none.
func URLAuth(raw string) (*Auth, error) {
	rest := strings.TrimPrefix(raw, "zk://")
	at := strings.LastIndex(rest, "@")
	if at < 0 || at > strings.Index(rest+"/", "/") {
		return nil, nil
	}
	a, err := ParseAuth(rest[:at])
	if err != nil {
		return nil, fmt.Errorf("the credentials of ZooKeeper URL zk://…@%s: %w", rest[at+1:], err)
	}
	return a, nil
}

// ConnectAs is Connect with digest authentication when auth is not nil: the
// session authenticates (again after every reconnect) and creates znodes
// with an ACL granting that identity alone.
func ConnectAs(ctx context.Context, servers []string, timeout time.Duration, auth *Auth) (*Session, error) {
	s, err := Connect(ctx, servers, timeout)
	if err != nil || auth == nil {
		return s, err
	}
	if err := s.AddAuth("digest", []byte(auth.User+":"+auth.Password)); err != nil {
		s.Close()
		return nil, fmt.Errorf("authenticating to ZooKeeper %v as %s: %w", servers, auth.User, err)
	}
	s.auth = auth
	return s, nil
}

// acl is the ACL of the znodes the session creates.
func (s *Session) acl() []gozk.ACL {
	if s.auth == nil {
		return gozk.WorldACL(gozk.PermAll)
	}
	return gozk.DigestACL(gozk.PermAll, s.auth.User, s.auth.Password)
}

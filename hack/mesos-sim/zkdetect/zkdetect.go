// Package zkdetect implements Mesos master registration and detection in
// ZooKeeper: each master creates an ephemeral sequential znode
// "json.info_<seq>" holding its MasterInfo as JSON under the path of a
// zk://host1:2181,host2:2181/mesos URL, and the lowest sequence leads.
package zkdetect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"
)

// Label is the znode name prefix of JSON MasterInfo entries (Mesos 0.24+).
const Label = "json.info_"

// SessionTimeout of the ZooKeeper session, the real master's --zk_session_timeout default.
const SessionTimeout = 10 * time.Second

// ParseURL splits zk://[user:pass@]host1:port,host2:port/path into servers and path.
func ParseURL(raw string) ([]string, string, error) {
	if !strings.HasPrefix(raw, "zk://") {
		return nil, "", fmt.Errorf("parsing ZooKeeper URL %q: expecting zk://", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("parsing ZooKeeper URL %q: %w", raw, err)
	}
	if u.Host == "" {
		return nil, "", fmt.Errorf("parsing ZooKeeper URL %q: no servers", raw)
	}
	p := u.Path
	if p == "" || p == "/" {
		return nil, "", fmt.Errorf("parsing ZooKeeper URL %q: no znode path", raw)
	}
	return strings.Split(u.Host, ","), path.Clean(p), nil
}

type klogger struct{}

func (klogger) Printf(format string, args ...any) { klog.V(4).Infof("zk: "+format, args...) }

// ConnectTimeout bounds the wait for a first session.
const ConnectTimeout = 60 * time.Second

// connect returns once a session exists: requests sent before that fail
// outright (a server that just started may refuse the first handshake).
func connect(servers []string) (*zk.Conn, error) {
	c, events, err := zk.Connect(servers, SessionTimeout, zk.WithLogger(klogger{}))
	if err != nil {
		return nil, fmt.Errorf("connecting to ZooKeeper %v: %w", servers, err)
	}
	timeout := time.After(ConnectTimeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, fmt.Errorf("connecting to ZooKeeper %v: connection closed", servers)
			}
			if ev.State == zk.StateHasSession {
				go func() {
					for range events {
					}
				}()
				return c, nil
			}
		case <-timeout:
			c.Close()
			return nil, fmt.Errorf("connecting to ZooKeeper %v: no session within %v", servers, ConnectTimeout)
		}
	}
}

func ensurePath(c *zk.Conn, p string) error {
	cur := ""
	for _, part := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		cur += "/" + part
		_, err := c.Create(cur, nil, 0, zk.WorldACL(zk.PermAll))
		if err != nil && err != zk.ErrNodeExists {
			return fmt.Errorf("creating znode %s: %w", cur, err)
		}
	}
	return nil
}

// Registration is a master's candidacy; closing it withdraws the master.
type Registration struct {
	conn *zk.Conn
	Node string
}

// Register enters a master into the election.
func Register(zkURL string, info mesos.MasterInfo) (*Registration, error) {
	servers, p, err := ParseURL(zkURL)
	if err != nil {
		return nil, err
	}
	c, err := connect(servers)
	if err != nil {
		return nil, err
	}
	if err := ensurePath(c, p); err != nil {
		c.Close()
		return nil, err
	}
	b, err := json.Marshal(&info)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("encoding MasterInfo: %w", err)
	}
	node, err := c.Create(path.Join(p, Label), b, zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("registering master %s in ZooKeeper: %w", info.ID, err)
	}
	klog.InfoS("Master registered in ZooKeeper", "master", info.ID, "znode", node)
	return &Registration{conn: c, Node: node}, nil
}

// Close withdraws the candidacy; the ephemeral znode goes with the session.
func (r *Registration) Close() { r.conn.Close() }

// Watch calls fn with the leading master whenever it changes (nil when no
// master is registered) until ctx ends.
func Watch(ctx context.Context, zkURL string, fn func(*mesos.MasterInfo)) error {
	servers, p, err := ParseURL(zkURL)
	if err != nil {
		return err
	}
	c, err := connect(servers)
	if err != nil {
		return err
	}
	if err := ensurePath(c, p); err != nil {
		c.Close()
		return err
	}
	go func() {
		defer c.Close()
		var last string
		first := true
		for {
			children, _, ch, err := c.ChildrenW(p)
			if err != nil {
				klog.V(2).InfoS("Watching masters in ZooKeeper failed, retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
				continue
			}
			var leader *mesos.MasterInfo
			leaderNode := ""
			if node := lowest(children); node != "" {
				b, _, err := c.Get(path.Join(p, node))
				if err == nil {
					var info mesos.MasterInfo
					if err := json.Unmarshal(b, &info); err == nil {
						leader, leaderNode = &info, node
					} else {
						klog.ErrorS(err, "Decoding MasterInfo from ZooKeeper", "znode", node)
					}
				}
			}
			if first || leaderNode != last {
				first = false
				last = leaderNode
				fn(leader)
			}
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
		}
	}()
	return nil
}

// lowest picks the leader's znode: the smallest sequence among json.info_ entries.
func lowest(children []string) string {
	var cands []string
	for _, c := range children {
		if strings.HasPrefix(c, Label) {
			cands = append(cands, c)
		}
	}
	sort.Slice(cands, func(i, j int) bool { return seq(cands[i]) < seq(cands[j]) })
	if len(cands) == 0 {
		return ""
	}
	return cands[0]
}

func seq(name string) string {
	// Sequence suffixes are zero-padded to 10 digits, so string order is numeric order.
	return name[strings.LastIndexByte(name, '_')+1:]
}

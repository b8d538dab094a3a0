package zk

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"
)

// MasterLabel prefixes the znodes in which Mesos masters (0.24+) publish
// their MasterInfo as JSON. The lowest sequence number leads.
const MasterLabel = "json.info_"

// MasterDetector follows the leading Mesos master under a znode. It
// implements the broker/mesos Detector.
type MasterDetector struct {
	s     *Session
	znode string

	mu      sync.Mutex
	leader  string        // http://host:port, "" while none leads
	changed chan struct{} // closed and replaced on every change
}

// NewMasterDetector watches znode (the path of --master=zk://.../mesos).
// Run must be running for Master to return.
func NewMasterDetector(s *Session, znode string) *MasterDetector {
	return &MasterDetector{s: s, znode: znode, changed: make(chan struct{})}
}

// Run follows the election until ctx ends.
func (d *MasterDetector) Run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("znode", d.znode)
	for ctx.Err() == nil {
		leader, watch, err := d.lookup()
		if err != nil {
			logger.Error(err, "Detecting the leading Mesos master")
			d.set(logger, "")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		d.set(logger, leader)
		select {
		case <-ctx.Done():
		case <-watch:
		}
	}
}

// lookup returns the leader's URL and a channel that fires when the set of
// masters changes (or the leader's znode does).
func (d *MasterDetector) lookup() (string, <-chan struct{}, error) {
	children, _, childW, err := d.s.ChildrenW(d.znode)
	if err != nil {
		// The path may not exist yet: watch for it.
		ok, _, existW, eerr := d.s.ExistsW(d.znode)
		if eerr == nil && !ok {
			return "", fanIn(existW), nil
		}
		return "", nil, fmt.Errorf("listing masters under %s: %w", d.znode, err)
	}
	var masters []string
	for _, c := range children {
		if strings.HasPrefix(c, MasterLabel) {
			masters = append(masters, c)
		}
	}
	if len(masters) == 0 {
		return "", fanIn(childW), nil
	}
	sort.Slice(masters, func(i, j int) bool { return seq(masters[i]) < seq(masters[j]) })
	data, _, err := d.s.Get(path.Join(d.znode, masters[0]))
	if err != nil {
		// It vanished between listing and reading: the children watch fires.
		return "", fanIn(childW), nil
	}
	u, err := MasterURL(data)
	if err != nil {
		return "", nil, fmt.Errorf("leading master znode %s: %w", masters[0], err)
	}
	return u, fanIn(childW), nil
}

func fanIn[T any](c <-chan T) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		<-c
		close(out)
	}()
	return out
}

func seq(name string) int64 {
	n, err := strconv.ParseInt(strings.TrimPrefix(name, MasterLabel), 10, 64)
	if err != nil {
		return 1<<63 - 1
	}
	return n
}

// MasterURL returns http://host:port of a MasterInfo JSON document.
func MasterURL(data []byte) (string, error) {
	var info mesos.MasterInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return "", fmt.Errorf("decoding MasterInfo JSON: %w", err)
	}
	host, port := "", int(info.GetPort())
	if a := info.Address; a != nil {
		host = a.GetIP()
		if host == "" {
			host = a.GetHostname()
		}
		if a.Port != 0 {
			port = int(a.Port)
		}
	}
	if host == "" && info.IP != 0 {
		// The legacy ip field is in network byte order read as little endian.
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], info.IP)
		host = net.IP(b[:]).String()
	}
	if host == "" {
		host = info.GetHostname()
	}
	if host == "" || port == 0 {
		return "", fmt.Errorf("MasterInfo %q has no address", info.ID)
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

func (d *MasterDetector) set(logger klog.Logger, leader string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if leader == d.leader {
		return
	}
	logger.Info("Leading Mesos master changed", "from", d.leader, "to", leader)
	d.leader = leader
	close(d.changed)
	d.changed = make(chan struct{})
}

// Master blocks until a master leads and returns its URL and a channel
// closed when the leadership changes.
func (d *MasterDetector) Master(ctx context.Context) (string, <-chan struct{}, error) {
	for {
		d.mu.Lock()
		leader, changed := d.leader, d.changed
		d.mu.Unlock()
		if leader != "" {
			return leader, changed, nil
		}
		select {
		case <-ctx.Done():
			return "", nil, fmt.Errorf("waiting for a leading Mesos master under %s: %w", d.znode, ctx.Err())
		case <-changed:
		}
	}
}

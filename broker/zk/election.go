package zk

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"k8s.io/klog/v2"
)

const candidateLabel = "candidate_"

// Elect runs for leadership among the brokers under dir: each candidate
// holds an ephemeral sequential znode, the lowest leads, and every other one
// watches only its predecessor (no herd on a change). It blocks until this
// candidate leads and returns a context that is cancelled when leadership is
// lost or ctx ends. Leadership is lost as soon as the connection is lost
// (Session.NextSuspension), not only when the session expires: a leader cut
// off from ZooKeeper learns of the expiry only after it reconnects, and by
// then another candidate has led for a while. identity is stored in the znode so
// that an operator can see who leads.
func Elect(ctx context.Context, s *Session, dir, identity string) (context.Context, error) {
	if err := ensurePath(s, dir); err != nil {
		return nil, fmt.Errorf("joining the broker election: %w", err)
	}
	me, err := s.CreateProtectedEphemeralSequential(path.Join(dir, candidateLabel), []byte(identity), s.acl())
	if err != nil {
		return nil, fmt.Errorf("joining the broker election under %s: %w", dir, err)
	}
	myName := path.Base(me)
	logger := klog.FromContext(ctx).WithValues("candidate", myName)
	resign := func() { _ = s.Delete(me, -1) }
	for {
		children, _, err := s.Children(dir)
		if err != nil {
			resign()
			return nil, fmt.Errorf("listing broker candidates under %s: %w", dir, err)
		}
		var cands []string
		for _, c := range children {
			if strings.Contains(c, candidateLabel) {
				cands = append(cands, c)
			}
		}
		sort.Slice(cands, func(i, j int) bool { return candSeq(cands[i]) < candSeq(cands[j]) })
		idx := -1
		for i, c := range cands {
			if c == myName {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("broker election: my znode %s vanished (session expired?)", me)
		}
		if idx == 0 {
			// Taken before the znode is trusted as leader: a suspension
			// from now on ends the leadership.
			suspended := s.NextSuspension()
			logger.Info("Elected broker leader", "identity", identity)
			lctx, cancel := context.WithCancel(ctx)
			go func() {
				defer cancel()
				select {
				case <-lctx.Done():
					resign()
				case <-suspended:
					// Stop leading first: the delete below waits for
					// go-zookeeper to give up on the lost connection (a
					// second or more), and the broker must write nothing
					// meanwhile.
					cancel()
					logger.Info("Broker leadership lost: the ZooKeeper connection was lost or the session ended")
					// Fails while disconnected; then the session's close
					// or expiry removes the znode.
					resign()
				}
			}()
			return lctx, nil
		}
		pred := path.Join(dir, cands[idx-1])
		ok, _, w, err := s.ExistsW(pred)
		if err != nil {
			resign()
			return nil, fmt.Errorf("watching broker candidate %s: %w", pred, err)
		}
		if !ok {
			continue
		}
		if data, _, err := s.Get(pred); err == nil && idx == 1 {
			logger.Info("Waiting for leadership", "leader", string(data))
		}
		select {
		case <-ctx.Done():
			resign()
			return nil, ctx.Err()
		case <-s.Expired():
			return nil, errors.New("broker election: ZooKeeper session expired")
		case <-w:
		case <-time.After(time.Minute):
			// A missed watch must not park a candidate forever.
		}
	}
}

// candSeq orders protected sequential names ("_c_<guid>-candidate_0000000001").
func candSeq(name string) string {
	i := strings.LastIndex(name, candidateLabel)
	return name[i+len(candidateLabel):]
}

// Leader returns the identity of the leading broker ("" when none runs).
func Leader(s *Session, dir string) (string, error) {
	children, _, err := s.Children(dir)
	if errors.Is(err, gozk.ErrNoNode) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("listing broker candidates under %s: %w", dir, err)
	}
	var cands []string
	for _, c := range children {
		if strings.Contains(c, candidateLabel) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return "", nil
	}
	sort.Slice(cands, func(i, j int) bool { return candSeq(cands[i]) < candSeq(cands[j]) })
	data, _, err := s.Get(path.Join(dir, cands[0]))
	if err != nil {
		return "", fmt.Errorf("reading the broker leader: %w", err)
	}
	return string(data), nil
}

package zk

import (
	"context"
	"errors"
	"fmt"
	"path"

	gozk "github.com/go-zookeeper/zk"
)

// FrameworkIDStore keeps the Mesos FrameworkID in a persistent znode. A
// broker that subscribed without its old id would register a new framework
// and orphan every running pod, so the id outlives every broker process.
type FrameworkIDStore struct {
	s     *Session
	znode string
}

// NewFrameworkIDStore stores the id in <dir>/framework-id.
func NewFrameworkIDStore(s *Session, dir string) *FrameworkIDStore {
	return &FrameworkIDStore{s: s, znode: path.Join(dir, "framework-id")}
}

// Get returns the stored id, "" when none is stored.
func (f *FrameworkIDStore) Get(context.Context) (string, error) {
	b, _, err := f.s.Get(f.znode)
	if errors.Is(err, gozk.ErrNoNode) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the framework id from znode %s: %w", f.znode, err)
	}
	return string(b), nil
}

// Set stores id ("" forgets it: the framework was removed from Mesos).
func (f *FrameworkIDStore) Set(_ context.Context, id string) error {
	if err := ensurePath(f.s, path.Dir(f.znode)); err != nil {
		return fmt.Errorf("storing the framework id: %w", err)
	}
	if _, err := f.s.Create(f.znode, []byte(id), 0, f.s.acl()); err == nil {
		return nil
	} else if !errors.Is(err, gozk.ErrNodeExists) {
		return fmt.Errorf("storing the framework id in znode %s: %w", f.znode, err)
	}
	if _, err := f.s.Conn.Set(f.znode, []byte(id), -1); err != nil {
		return fmt.Errorf("storing the framework id in znode %s: %w", f.znode, err)
	}
	return nil
}

package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// loadCheckpoint reads the state an earlier process of this executor left
// (nil when there is none).
func loadCheckpoint(path string) (*executorState, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the executor checkpoint: %w", err)
	}
	var st executorState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading the executor checkpoint %s: %w", path, err)
	}
	if st.Tasks == nil {
		st.Tasks = map[string]*task{}
	}
	return &st, nil
}

// save checkpoints the registry and the connection's unacknowledged state,
// atomically, when something changed.
func (l *loop) save() error {
	if l.o.CheckpointFile == "" {
		return nil
	}
	st := executorState{Node: l.node, Tasks: l.tasks, Conn: l.conn.State()}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding the executor checkpoint: %w", err)
	}
	if string(b) == string(l.savedBytes) {
		return nil
	}
	tmp := l.o.CheckpointFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return fmt.Errorf("writing the executor checkpoint: %w", err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing the executor checkpoint: %w", err)
	}
	if err := os.Rename(tmp, l.o.CheckpointFile); err != nil {
		return fmt.Errorf("writing the executor checkpoint: %w", err)
	}
	l.savedBytes = b
	return nil
}

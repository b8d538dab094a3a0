package failpoint

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPauseFiresOnce: without a directory no point fires, whatever files
// exist; with one, a pause holds the caller until its file goes, and fires
// once.
func TestPauseFiresOnce(t *testing.T) {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "p"), []byte("pause\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Hit("p") // not enabled: returns at once
	if _, err := os.Stat(filepath.Join(d, "p")); err != nil {
		t.Fatalf("a point fired while failpoints were off: %v", err)
	}
	Enable(d)
	t.Cleanup(func() { dir.Store(nil) })
	done := make(chan struct{})
	go func() { Hit("p"); close(done) }()
	paused := filepath.Join(d, "p.paused")
	for {
		if _, err := os.Stat(paused); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatal("the point returned without pausing")
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-done:
		t.Fatal("the point returned while its .paused file exists")
	case <-time.After(200 * time.Millisecond):
	}
	if err := os.Remove(paused); err != nil {
		t.Fatal(err)
	}
	<-done
	Hit("p") // fired once: the file is gone
	if _, err := os.Stat(paused); err == nil {
		t.Error("the point fired twice")
	}
}

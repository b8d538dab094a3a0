package netns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// newNamespace makes a network namespace for the test, or skips when that
// is not allowed here.
func newNamespace(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	name := fmt.Sprintf("k8sm-netns-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	return "/run/netns/" + name
}

func TestDoRunsSocketsAndProcessesInTheNamespace(t *testing.T) {
	path := newNamespace(t)
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var child string
	var ifaces []net.Interface
	var ln net.Listener
	err = Do(path, func() error {
		out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
		child = strings.TrimSpace(string(out))
		if err != nil {
			return err
		}
		if ifaces, err = net.Interfaces(); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if child == self || !strings.Contains(child, fmt.Sprint(inode(want))) {
		t.Errorf("a process started in Do runs in %s; the test runs in %s, the namespace is inode %d", child, self, inode(want))
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Errorf("interfaces seen in a new namespace: %v, want only lo", ifaces)
	}
	// The listener belongs to the namespace: the test's loopback does not
	// reach it.
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("a listener opened in the namespace answers on the host's %s", ln.Addr())
	}
	// The calling goroutine's thread never moved.
	if now, _ := os.Readlink("/proc/thread-self/ns/net"); now != self {
		t.Errorf("the caller's thread is in %s after Do, was in %s", now, self)
	}
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func TestDoWithoutPathRunsHere(t *testing.T) {
	ran := false
	if err := Do("", func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do(\"\") ran %v, err %v", ran, err)
	}
	if err := Do("/nonexistent/netns", func() error { return nil }); err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Errorf("Do on a missing namespace: %v, want an error naming it", err)
	}
}

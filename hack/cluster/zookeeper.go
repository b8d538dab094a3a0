package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Debian's zookeeper package; its jar's manifest names every dependency.
// slf4j-simple gives the server a logger that writes to its log file
// (without a binding ZooKeeper logs nothing at all).
const (
	zooKeeperJar   = "/usr/share/java/zookeeper.jar"
	slf4jSimpleJar = "/usr/share/java/slf4j-simple.jar"
	zooKeeperMain  = "org.apache.zookeeper.server.ZooKeeperServerMain"
)

// StartZooKeeper runs a standalone ZooKeeper server with its data in dir,
// listening on 127.0.0.1:port, and returns once it serves requests ("srvr"
// reports its mode). There is no systemd here, so the server is started with
// java directly.
func StartZooKeeper(ctx context.Context, dir string, port int) (*Process, error) {
	return startZooKeeper(ctx, dir, dir, port)
}

func startZooKeeper(ctx context.Context, stateDir, dir string, port int) (*Process, error) {
	for _, f := range []string{zooKeeperJar, slf4jSimpleJar} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("ZooKeeper is not installed (%s missing): run hack/install-deps.sh, or apt-get install zookeeper libslf4j-java", f)
		}
	}
	java, err := lookPath("java", "ZooKeeper needs Java: run hack/install-deps.sh, or apt-get install zookeeper")
	if err != nil {
		return nil, err
	}
	if err := checkPortFree("zookeeper", port, "K8SM_ZK_PORT"); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, fmt.Errorf("creating ZooKeeper data dir: %w", err)
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := strings.Join([]string{
		"tickTime=2000",
		"dataDir=" + data,
		"clientPort=" + strconv.Itoa(port),
		"clientPortAddress=127.0.0.1",
		"maxClientCnxns=0",
		// The AdminServer would take port 8080 on every address.
		"admin.enableServer=false",
		"4lw.commands.whitelist=ruok,srvr,stat,mntr",
		"",
	}, "\n")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfg, err)
	}
	p, err := startProcess("zookeeper", stateDir, nil,
		java, "-Xmx256m", "-XX:+UseSerialGC",
		"-Dzookeeper.log.dir="+dir, "-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-cp", zooKeeperJar+":"+slf4jSimpleJar, zooKeeperMain, cfg)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitHealthy(ctx, p, 60*time.Second, func(ctx context.Context) error { return zkRuok(ctx, addr) }); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// zkRuok asks ZooKeeper's "srvr" four-letter command whether the server
// serves requests. "ruok" is not enough: it answers "imok" as soon as the
// process listens, before the server hands out sessions.
func zkRuok(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("srvr")); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "Mode: ") {
		return fmt.Errorf("%w: zookeeper answered %q to srvr", errNotReady, strings.TrimSpace(string(b)))
	}
	return nil
}

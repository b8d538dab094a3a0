// Command webapp is the sample workload of the local cluster: an HTTP server
// that says which pod and host answered, with a health endpoint, and an
// optional exit code so that tests can make a container fail on purpose.
// `webapp get [--service-account] URL...` is its client: it prints what each
// URL answers (the image's busybox wget crashes here), resolving names
// through the pod's resolv.conf; --service-account authenticates with the
// pod's service account token and trusts the cluster's CA, as in-cluster
// clients do. `webapp lookup NAME` prints the addresses NAME resolves to
// (one a line, sorted), through the pod's resolv.conf as `get` resolves.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "lookup" {
		os.Exit(lookup(os.Args[2:]))
	}
	addr := flag.String("listen", ":8080", "address to serve HTTP on")
	exitAfter := flag.Duration("exit-after", 0, "exit after this long (0: serve until stopped)")
	exitCode := flag.Int("exit-code", 0, "exit code used with --exit-after")
	allocMiB := flag.Int("alloc-mib", 0, "allocate and touch this many MiB before serving (to meet a memory limit)")
	backend := flag.String("backend", "", "a URL (e.g. http://backend/, a Service by name) this server calls on every request and whose answer it adds to its own: the front tier of a two-tier sample")
	flag.Parse()

	if *allocMiB > 0 {
		held = allocate(*allocMiB)
	}

	if *exitAfter > 0 {
		go func() {
			time.Sleep(*exitAfter)
			log.Printf("exiting with code %d as asked", *exitCode)
			os.Exit(*exitCode)
		}()
	}

	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "hello from %s (pod %s/%s on node %s)\n", host, os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME"), os.Getenv("NODE_NAME"))
		if *backend != "" {
			fmt.Fprintf(w, "  %s says: %s", *backend, callBackend(r.Context(), *backend))
		}
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("serving on %s", *addr)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serving: %v", err)
	}
}

// held keeps --alloc-mib's memory reachable for the program's life.
var held [][]byte

// allocate takes n MiB, writing every page so that the kernel charges it to
// the container's memory cgroup.
func allocate(n int) [][]byte {
	log.Printf("allocating %d MiB", n)
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		out = append(out, b)
	}
	log.Printf("allocated %d MiB", n)
	return out
}

// backendClient calls the back tier: a new connection each time, so that
// every request is balanced by the Service anew.
var backendClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// callBackend is the back tier's answer, or what went wrong.
func callBackend(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Sprintf("error: %v\n", err)
	}
	resp, err := backendClient.Do(req)
	if err != nil {
		return fmt.Sprintf("error: %v\n", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("error: %s %v\n", resp.Status, err)
	}
	return string(b)
}

// saDir is where the kubelet mounts a pod's service account credentials.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// get prints the body of each URL and fails (exit 1) on the first that does
// not answer 200 within 5 seconds.
func get(args []string) int {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	sa := fs.Bool("service-account", false, "send the pod's service account token and trust the cluster CA ("+saDir+")")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: webapp get [--service-account] URL...")
		return 2
	}
	client := &http.Client{Timeout: 5 * time.Second}
	var token string
	if *sa {
		b, err := os.ReadFile(saDir + "/token")
		if err != nil {
			fmt.Fprintf(os.Stderr, "reading the service account token: %v\n", err)
			return 1
		}
		token = string(b)
		ca, err := os.ReadFile(saDir + "/ca.crt")
		if err != nil {
			fmt.Fprintf(os.Stderr, "reading the cluster CA: %v\n", err)
			return 1
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			fmt.Fprintf(os.Stderr, "%s/ca.crt holds no certificate\n", saDir)
			return 1
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	for _, u := range fs.Args() {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "GET %s: %v\n", u, err)
			return 2
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			fmt.Fprintf(os.Stderr, "GET %s: %v\n", u, err)
			return 1
		}
		_, err = io.Copy(os.Stdout, resp.Body)
		resp.Body.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "GET %s: reading the body: %v\n", u, err)
			return 1
		}
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintf(os.Stderr, "GET %s: %s\n", u, resp.Status)
			return 1
		}
	}
	return 0
}

// lookup prints the addresses of each name, sorted, one a line.
func lookup(names []string) int {
	if len(names) == 0 {
		fmt.Fprintln(os.Stderr, "usage: webapp lookup NAME...")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range names {
		addrs, err := net.DefaultResolver.LookupHost(ctx, n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "looking up %s: %v\n", n, err)
			return 1
		}
		sort.Strings(addrs)
		for _, a := range addrs {
			fmt.Println(a)
		}
	}
	return 0
}

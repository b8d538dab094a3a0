package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
)

// lookPath finds a program on PATH or returns hint as the error, so that a
// missing package is reported as what to do, not as "executable not found".
func lookPath(name, hint string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH: %s", name, hint)
	}
	return p, nil
}

// runWithStdin runs a program with stdin and returns its combined output.
func runWithStdin(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.CombinedOutput()
}

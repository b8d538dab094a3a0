package cluster

import (
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

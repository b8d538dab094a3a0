package app

import (
	"fmt"
	"os"
	"strings"

	brokerzk "github.com/k8sm/k8sm/broker/zk"
)

// zkAuth resolves the ZooKeeper credentials: --zk-credentials-file, else the
// user:password@ of the URL. Credentials given are never dropped: a bad
// file or URL is an error. Without readFile (validation) the file is left
// for Config to read.
func (o *Options) zkAuth(readFile bool) (state, master *brokerzk.Auth, err error) {
	if strings.HasPrefix(o.Master, "zk://") {
		if master, err = brokerzk.URLAuth(o.Master); err != nil {
			return nil, nil, fmt.Errorf("--master: %w", err)
		}
	}
	switch {
	case o.ZKCredentialsFile != "" && !readFile:
	case o.ZKCredentialsFile != "":
		b, err := os.ReadFile(o.ZKCredentialsFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--zk-credentials-file: %w", err)
		}
		if state, err = brokerzk.ParseAuth(string(b)); err != nil {
			return nil, nil, fmt.Errorf("--zk-credentials-file %s: %w", o.ZKCredentialsFile, err)
		}
	case o.ZK != "":
		if state, err = brokerzk.URLAuth(o.ZK); err != nil {
			return nil, nil, fmt.Errorf("--zk: %w", err)
		}
	default:
		// The broker's state under the masters' servers: their credentials.
		state = master
	}
	if master == nil {
		master = state
	}
	return state, master, nil
}

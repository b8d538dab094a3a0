package master

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	"k8s.io/klog/v2"
)

// FrameworkRealm is the realm of the scheduler API's authentication
// (DEFAULT_HTTP_FRAMEWORK_AUTHENTICATION_REALM in src/master/constants.hpp).
const FrameworkRealm = "mesos-master-scheduler"

// ReadCredentials reads a --credentials file as Mesos 1.11 does
// (src/credentials/credentials.hpp): JSON {"credentials": [{"principal":
// "…", "secret": "…"}]}, a file:// prefix allowed, at least one credential.
func ReadCredentials(path string) (map[string]string, error) {
	path = strings.TrimPrefix(path, "file://")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read credentials file '%s': %w (see --credentials flag)", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		klog.InfoS("Permissions on credentials file are too open; it is recommended that your credentials file is NOT accessible by others", "path", path)
	}
	var doc struct {
		Credentials []struct {
			Principal string `json:"principal"`
			Secret    string `json:"secret"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("invalid json format in credentials file '%s': %w (see --credentials flag)", path, err)
	}
	creds := map[string]string{}
	for i, c := range doc.Credentials {
		if c.Principal == "" {
			return nil, fmt.Errorf("failed to parse credentials file '%s': credential %d has no principal (see --credentials flag)", path, i)
		}
		creds[c.Principal] = c.Secret
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("credentials file '%s' must contain at least one credential (see --credentials flag)", path)
	}
	return creds, nil
}

type principalKey struct{}

// principalOf is the principal a request authenticated as ("" when the
// master does not authenticate HTTP frameworks).
func principalOf(r *http.Request) string {
	p, _ := r.Context().Value(principalKey{}).(string)
	return p
}

// authenticated is libprocess' basic authenticator in front of a handler
// of the scheduler realm (3rdparty/libprocess/src/authenticator.cpp): a
// missing, malformed or wrong Authorization header gets 401 with the
// realm's challenge and no body, before the handler (and so before the
// leader check) runs. Without credentials the realm has no authenticator
// and every request passes unauthenticated, as with
// --authenticate_http_frameworks=false.
func (m *Master) authenticated(h http.HandlerFunc) http.HandlerFunc {
	if m.cfg.Credentials == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		principal, ok := basicAuth(r.Header.Get("Authorization"), m.cfg.Credentials)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+FrameworkRealm+`"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal)))
	}
}

// basicAuth checks "Basic base64(principal:secret)" the way libprocess
// does: exactly two space-separated parts, exactly one colon.
func basicAuth(header string, creds map[string]string) (string, bool) {
	parts := strings.Split(header, " ")
	if len(parts) != 2 || parts[0] != "Basic" {
		return "", false
	}
	decoded, err := base64.StdEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	pair := strings.Split(string(decoded), ":")
	if len(pair) != 2 {
		return "", false
	}
	secret, known := creds[pair[0]]
	if !known || secret != pair[1] {
		return "", false
	}
	return pair[0], true
}

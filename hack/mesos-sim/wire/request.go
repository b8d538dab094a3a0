package wire

import (
	"errors"
	"io"
	"net/http"
	"strconv"
)

// DecodeCall applies the body checks that the real master's scheduler
// endpoint and the agent's executor endpoint share, in their order (size
// first, then parsing), and returns the HTTP status to answer with when one
// fails.
func DecodeCall(contentType string, body []byte, maxSize int, m Message) (int, error) {
	if len(body) > maxSize && (contentType == JSON || contentType == Protobuf) {
		return http.StatusBadRequest, &DecodeError{Msg: "Failed to parse body into Call protobuf: request body exceeds " + strconv.Itoa(maxSize) + " bytes"}
	}
	if err := Decode(contentType, body, m); err != nil {
		var ume *UnsupportedMediaTypeError
		if errors.As(err, &ume) {
			return http.StatusUnsupportedMediaType, err
		}
		return http.StatusBadRequest, err
	}
	return 0, nil
}

// HTTPError answers with code and msg as plain text, as Mesos does.
func HTTPError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// MethodNotAllowed answers a request that is not a POST, as libprocess does.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "POST")
	HTTPError(w, http.StatusMethodNotAllowed, "Expecting one of { 'POST' }, but received '"+r.Method+"'")
}

// ReadCall applies the checks every v1 call endpoint makes before its own
// (POST, a Content-Type, a readable body that decodes within maxSize) into
// m, in their order. On failure it has answered and returns "".
func ReadCall(w http.ResponseWriter, r *http.Request, maxSize int, m Message) (contentType string) {
	if r.Method != http.MethodPost {
		MethodNotAllowed(w, r)
		return ""
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		HTTPError(w, http.StatusBadRequest, "Expecting 'Content-Type' to be present")
		return ""
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(maxSize)+1))
	if err != nil {
		HTTPError(w, http.StatusBadRequest, "Failed to read request body: "+err.Error())
		return ""
	}
	if code, err := DecodeCall(ct, body, maxSize, m); err != nil {
		HTTPError(w, code, err.Error())
		return ""
	}
	return ct
}

// WriteMessage answers 200 with m encoded as contentType.
func WriteMessage(w http.ResponseWriter, contentType string, m Message) {
	b, err := Encode(contentType, m)
	if err != nil {
		HTTPError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(b)
}

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

package wire

import (
	"encoding/json"
	"fmt"
	"mime"
	"reflect"
	"strconv"
	"strings"
)

// Content types of the v1 APIs; Mesos compares them literally.
const (
	JSON     = "application/json"
	Protobuf = "application/x-protobuf"
)

// Message is what every mesos-go v1 generated type satisfies.
type Message interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
	Reset()
	String() string
}

// DecodeError is a body the endpoint must answer with 400 Bad Request; the
// text mirrors what the real master puts in the response body.
type DecodeError struct{ Msg string }

func (e *DecodeError) Error() string { return e.Msg }

// UnsupportedMediaTypeError is answered with 415.
type UnsupportedMediaTypeError struct{ ContentType string }

func (e *UnsupportedMediaTypeError) Error() string {
	return "Expecting 'Content-Type' of " + JSON + " or " + Protobuf
}

// Decode parses body into m according to contentType, applying the same checks
// as the real master: protobuf must parse, JSON must parse and convert (an
// unknown enum name is a conversion error, unknown fields are ignored), and
// proto2 required fields must be set in either encoding.
func Decode(contentType string, body []byte, m Message) error {
	switch contentType {
	case Protobuf:
		if err := m.Unmarshal(body); err != nil {
			return &DecodeError{Msg: "Failed to parse body into " + typeName(m) + " protobuf: " + err.Error()}
		}
		return nil
	case JSON:
		if !json.Valid(body) {
			var raw any
			err := json.Unmarshal(body, &raw)
			return &DecodeError{Msg: "Failed to parse body into JSON: " + err.Error()}
		}
		if err := requiredFromJSON(body, m); err != nil {
			return &DecodeError{Msg: "Failed to convert JSON into " + typeName(m) + " protobuf: Not initialized: " + err.Error()}
		}
		if err := json.Unmarshal(body, m); err != nil {
			return &DecodeError{Msg: "Failed to convert JSON into " + typeName(m) + " protobuf: " + err.Error()}
		}
		// The generated JSON decoders do not know proto2 "required"; the binary
		// decoder does, so a round trip reports what Mesos would call
		// "Not initialized".
		b, err := m.Marshal()
		if err != nil {
			return &DecodeError{Msg: "Failed to convert JSON into " + typeName(m) + " protobuf: " + err.Error()}
		}
		probe := reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
		if err := probe.Unmarshal(b); err != nil {
			return &DecodeError{Msg: "Failed to convert JSON into " + typeName(m) + " protobuf: " + err.Error()}
		}
		return nil
	default:
		return &UnsupportedMediaTypeError{ContentType: contentType}
	}
}

// Encode serialises m in the given content type.
func Encode(contentType string, m Message) ([]byte, error) {
	switch contentType {
	case Protobuf:
		b, err := m.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encoding %s as protobuf: %w", typeName(m), err)
		}
		return b, nil
	case JSON:
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encoding %s as JSON: %w", typeName(m), err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("encoding %s: unsupported content type %q", typeName(m), contentType)
}

func typeName(m Message) string {
	t := reflect.TypeOf(m)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

type mediaRange struct {
	typ, sub string
	q        float64
}

// Accepts reports whether an Accept header value admits mediaType, the way
// libprocess's Request::acceptsMediaType does: no header accepts everything,
// wildcards match, and q=0 refuses.
func Accepts(accept []string, mediaType string) bool {
	if len(accept) == 0 {
		return true
	}
	want := strings.SplitN(mediaType, "/", 2)
	best := -1.0
	bestSpecificity := -1
	for _, h := range accept {
		for _, part := range strings.Split(h, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			r := mediaRange{q: 1}
			if s := strings.SplitN(mt, "/", 2); len(s) == 2 {
				r.typ, r.sub = s[0], s[1]
			} else {
				continue
			}
			if qs, ok := params["q"]; ok {
				q, err := strconv.ParseFloat(qs, 64)
				if err != nil {
					continue
				}
				r.q = q
			}
			spec := -1
			switch {
			case r.typ == want[0] && r.sub == want[1]:
				spec = 2
			case r.typ == want[0] && r.sub == "*":
				spec = 1
			case r.typ == "*" && r.sub == "*":
				spec = 0
			}
			// The most specific matching range decides, as RFC 7231 5.3.2 says.
			if spec > bestSpecificity {
				bestSpecificity, best = spec, r.q
			}
		}
	}
	return best > 0
}

// NegotiateStream picks the response type for a streaming call, or any
// call of the operator API: JSON is preferred when both are acceptable, as
// in the master's handlers.
func NegotiateStream(accept []string) (string, bool) {
	for _, ct := range []string{JSON, Protobuf} {
		if Accepts(accept, ct) {
			return ct, true
		}
	}
	return "", false
}

// NotAcceptableMessage is the 406 body of the real master.
const NotAcceptableMessage = "Expecting 'Accept' to allow '" + Protobuf + "' or '" + JSON + "'"

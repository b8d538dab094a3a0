package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

func TestRecordIORoundTrip(t *testing.T) {
	var buf bytes.Buffer
	recs := [][]byte{[]byte(`{"type":"HEARTBEAT"}`), {}, bytes.Repeat([]byte{0, '\n', 9}, 1000)}
	for _, r := range recs {
		if err := WriteRecord(&buf, r); err != nil {
			t.Fatal(err)
		}
	}
	// mesos-go's own reader understands our framing (it skips empty
	// records, which Mesos never sends).
	theirs := recordio.NewReader(bytes.NewReader(buf.Bytes()))
	for i, want := range recs {
		if len(want) == 0 {
			continue
		}
		got, err := theirs.ReadFrame()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("mesos-go reader record %d: %d bytes, %v", i, len(got), err)
		}
	}
	rd := NewReader(&buf, 0)
	for i, want := range recs {
		got, err := rd.ReadRecord()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("record %d: %q, %v", i, got, err)
		}
	}
	if _, err := rd.ReadRecord(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestRecordIOErrors(t *testing.T) {
	for in, want := range map[string]error{
		"5\nabc":                     io.ErrUnexpectedEOF,
		"12":                         io.ErrUnexpectedEOF,
		"999999999999\nx":            ErrRecordTooLarge,
		"x\n":                        nil,
		"\n":                         nil,
		"123456789012345678901234\n": nil,
	} {
		_, err := NewReader(strings.NewReader(in), 1<<20).ReadRecord()
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%q: %v, want %v", in, err, want)
		}
	}
}

func TestAccepts(t *testing.T) {
	cases := []struct {
		accept []string
		json   bool
		proto  bool
	}{
		{nil, true, true},
		{[]string{"application/json"}, true, false},
		{[]string{"application/x-protobuf"}, false, true},
		{[]string{"*/*"}, true, true},
		{[]string{"application/*"}, true, true},
		{[]string{"application/json;q=0, */*"}, false, true},
		{[]string{"text/html"}, false, false},
		{[]string{"text/html, application/x-protobuf;q=0.5"}, false, true},
	}
	for _, c := range cases {
		if got := Accepts(c.accept, JSON); got != c.json {
			t.Errorf("%v accepts JSON = %v", c.accept, got)
		}
		if got := Accepts(c.accept, Protobuf); got != c.proto {
			t.Errorf("%v accepts protobuf = %v", c.accept, got)
		}
	}
	if ct, _ := NegotiateStream(nil); ct != JSON {
		t.Errorf("no Accept negotiates %s, want JSON as the master does", ct)
	}
}

func TestDecodeRequired(t *testing.T) {
	var c scheduler.Call
	err := Decode(JSON, []byte(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"x"}}}`), &c)
	if err == nil || !strings.Contains(err.Error(), "user") {
		t.Fatalf("missing user: %v", err)
	}
	info := mesos.FrameworkInfo{User: "u", Name: "n"}
	good := &scheduler.Call{Type: scheduler.Call_SUBSCRIBE, Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &info}}
	for _, ct := range []string{JSON, Protobuf} {
		b, err := Encode(ct, good)
		if err != nil {
			t.Fatal(err)
		}
		var back scheduler.Call
		if err := Decode(ct, b, &back); err != nil || back.Subscribe.FrameworkInfo.User != "u" {
			t.Fatalf("%s round trip: %v", ct, err)
		}
	}
	if err := Decode("text/plain", nil, &c); err == nil {
		t.Fatal("text/plain decoded")
	}
}

// FuzzRecordIO: the reader never panics, never returns more than the limit,
// and everything written can be read back.
func FuzzRecordIO(f *testing.F) {
	f.Add([]byte("20\n{\"type\":\"HEARTBEAT\"}"))
	f.Add([]byte("0\n"))
	f.Add([]byte("3\nabc4\ndefg"))
	f.Add([]byte("99999999999999999999999\n"))
	f.Add([]byte("5\nab"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data), 1024)
		for i := 0; i < 100; i++ {
			rec, err := rd.ReadRecord()
			if err != nil {
				break
			}
			if len(rec) > 1024 {
				t.Fatalf("record of %d bytes over the limit", len(rec))
			}
		}
		var buf bytes.Buffer
		if err := WriteRecord(&buf, data); err != nil {
			t.Fatal(err)
		}
		got, err := NewReader(&buf, len(data)+1).ReadRecord()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	})
}

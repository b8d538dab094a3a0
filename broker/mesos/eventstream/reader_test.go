package eventstream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

func testOffer(i int) mesos.Offer {
	host := fmt.Sprintf("host-%d", i)
	ip := "10.0.0.1"
	role := "k8sm"
	return mesos.Offer{
		ID:          mesos.OfferID{Value: fmt.Sprintf("offer-%d", i)},
		FrameworkID: mesos.FrameworkID{Value: "fw-1"},
		AgentID:     mesos.AgentID{Value: fmt.Sprintf("agent-%d", i)},
		Hostname:    host,
		URL:         &mesos.URL{Scheme: "http", Address: mesos.Address{Hostname: &host, IP: &ip, Port: 5051}},
		Resources: []mesos.Resource{
			{Name: "cpus", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 8}, AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role}},
			{Name: "ports", Type: mesos.RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []mesos.Value_Range{{Begin: 31000, End: 32000}}}, AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role}},
		},
		Attributes:     []mesos.Attribute{{Name: "rack", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: fmt.Sprintf("r%d", i%3)}}},
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role},
	}
}

func testEvents() []*scheduler.Event {
	offers := make([]mesos.Offer, 50)
	for i := range offers {
		offers[i] = testOffer(i)
	}
	uuid := []byte{1, 2, 3}
	agent := mesos.AgentID{Value: "agent-1"}
	return []*scheduler.Event{
		{Type: scheduler.Event_SUBSCRIBED, Subscribed: &scheduler.Event_Subscribed{FrameworkID: &mesos.FrameworkID{Value: "fw-1"}}},
		{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: offers}},
		{Type: scheduler.Event_UPDATE, Update: &scheduler.Event_Update{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: "t-1"}, State: mesos.TASK_RUNNING.Enum(), UUID: uuid, AgentID: &agent}}},
		{Type: scheduler.Event_RESCIND, Rescind: &scheduler.Event_Rescind{OfferID: mesos.OfferID{Value: "offer-3"}}},
		{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{}},
		{Type: scheduler.Event_HEARTBEAT},
	}
}

// stream frames records as the master does, with an empty record (which
// readers skip) after the first.
func stream(records ...[]byte) []byte {
	var b bytes.Buffer
	for i, r := range records {
		b.WriteString(strconv.Itoa(len(r)) + "\n")
		b.Write(r)
		if i == 0 {
			b.WriteString("0\n")
		}
	}
	return b.Bytes()
}

func encode(t *testing.T, json_ bool, ev *scheduler.Event) []byte {
	t.Helper()
	var b []byte
	var err error
	if json_ {
		b, err = json.Marshal(ev)
	} else {
		b, err = ev.Marshal()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeWhole decodes a record whole, as mesos-go's decoders do.
func decodeWhole(t *testing.T, json_ bool, rec []byte) *scheduler.Event {
	t.Helper()
	ev := new(scheduler.Event)
	var err error
	if json_ {
		err = json.Unmarshal(rec, ev)
	} else {
		err = ev.Unmarshal(rec)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestEventReaderDecodesAsAWholeRecordDecoder: in both content types every
// event reads as mesos-go's whole-record decoding reads it, and every offer
// of an OFFERS event reaches the callback, in order, equal to the offer
// sent — or, without a callback, is in the event.
func TestEventReaderDecodesAsAWholeRecordDecoder(t *testing.T) {
	for _, json_ := range []bool{false, true} {
		t.Run(map[bool]string{false: "protobuf", true: "json"}[json_], func(t *testing.T) {
			events := testEvents()
			var recs [][]byte
			for _, ev := range events {
				recs = append(recs, encode(t, json_, ev))
			}
			for _, streaming := range []bool{true, false} {
				r := NewReader(bytes.NewReader(stream(recs...)), json_)
				for i, sent := range events {
					var got []mesos.Offer
					var offer func(*mesos.Offer)
					if streaming {
						offer = func(o *mesos.Offer) { got = append(got, *o) }
					}
					ev, err := r.Next(offer)
					if err != nil {
						t.Fatalf("event %d (%s): %v", i, sent.Type, err)
					}
					want := decodeWhole(t, json_, recs[i])
					if streaming && ev.Type == scheduler.Event_OFFERS {
						if ev.Offers == nil || len(ev.Offers.Offers) != 0 {
							t.Errorf("event %d: the streamed offers are also in the event", i)
						}
						ev.Offers.Offers = got
					} else if got != nil {
						t.Errorf("event %d (%s): %d offers streamed", i, ev.Type, len(got))
					}
					if len(want.GetOffers().GetOffers()) == 0 && ev.Offers != nil && want.Offers != nil {
						ev.Offers.Offers = want.Offers.Offers // nil and empty alike
					}
					if !ev.Equal(want) {
						t.Errorf("event %d (%s) reads as\n%v\nwant\n%v", i, sent.Type, ev, want)
					}
					if n := len(ev.GetOffers().GetOffers()); n != len(sent.GetOffers().GetOffers()) {
						t.Errorf("event %d: %d offers, sent %d", i, n, len(sent.GetOffers().GetOffers()))
					}
				}
				if _, err := r.Next(nil); err != io.EOF {
					t.Errorf("at the end of the stream: %v, want io.EOF", err)
				}
			}
		})
	}
}

// TestEventReaderMalformed: a malformed record is an error that says where,
// and the offers before the bad one were handed on only to a batch that the
// client drops (see TestMalformedOffersEventLeavesNoOffer).
func TestEventReaderMalformed(t *testing.T) {
	good := testOffer(0)
	goodPB, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	goodJSON, err := json.Marshal(&good)
	if err != nil {
		t.Fatal(err)
	}
	// Event{type: OFFERS, offers: {offers: [good, <a field of wire type 7>]}}.
	var offersMsg []byte
	offersMsg = binary.AppendUvarint(offersMsg, 1<<3|2)
	offersMsg = binary.AppendUvarint(offersMsg, uint64(len(goodPB)))
	offersMsg = append(offersMsg, goodPB...)
	offersMsg = append(offersMsg, 1<<3|2, 1, 0x0f)
	badPB := []byte{1 << 3, byte(scheduler.Event_OFFERS), 3<<3 | 2}
	badPB = binary.AppendUvarint(badPB, uint64(len(offersMsg)))
	badPB = append(badPB, offersMsg...)
	full := stream(encode(t, false, testEvents()[1]))

	cases := []struct {
		name   string
		json   bool
		stream []byte
		want   string
	}{
		{"protobuf offer undecodable", false, stream(badPB), "decoding offer 1"},
		{"protobuf record cut short", false, full[:len(full)/2], "unexpected EOF"},
		{"protobuf length past the record", false, stream(badPB[:len(badPB)-5]), "in the"},
		{"json offer of the wrong type", true, stream([]byte(`{"type":"OFFERS","offers":{"offers":[` + string(goodJSON) + `,{"id":5}]}}`)), "decoding offer 1"},
		{"json not an object", true, stream([]byte(`[1]`)), "where"},
		{"json data after the event", true, stream([]byte(`{"type":"HEARTBEAT"} {}`)), "data after"},
		{"json record cut short", true, []byte("100\n" + `{"type":"OFFERS","offers":{"offers":[` + string(goodJSON)), "unexpected EOF"},
		{"header not a number", false, []byte("12x\nabc"), "RecordIO header"},
		{"header too long", false, []byte(strings.Repeat("1", 30) + "\n"), "RecordIO header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.stream), c.json)
			n := 0
			ev, err := r.Next(func(*mesos.Offer) { n++ })
			if err == nil {
				t.Fatalf("read %v with %d offers, want an error", ev, n)
			}
			if !strings.Contains(err.Error(), c.want) || errors.Is(err, io.EOF) {
				t.Errorf("error %q, want one saying %q", err, c.want)
			}
		})
	}
}

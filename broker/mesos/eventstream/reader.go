// Package eventstream reads the event stream of a Mesos v1 scheduler
// subscription (RecordIO records of protobuf or JSON Events) and hands the
// offers of an OFFERS event on one at a time as it decodes them.
package eventstream

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// Reader reads the subscription's RecordIO stream of scheduler events
// (the Mesos v1 scheduler API: each record is "<length>\n" and that many
// bytes of one Event, protobuf or JSON) and hands the offers of an OFFERS
// event on one at a time as it decodes them. mesos-go's reader buffered a
// whole record (up to 4 MiB, and refused a longer one: an OFFERS event of
// ~12,000 agents in protobuf, ~7,000 in JSON) and decoded it whole: at
// 10,000 agents ~3 MiB of record and ~13 MiB of decoded event, all garbage
// once the offer cache took its compact records. Here what is held is one
// offer's bytes and decoded offer at a time, and the event's other fields.
type Reader struct {
	r    *bufio.Reader
	json bool
	// buf holds one offer's bytes at a time (protobuf).
	buf []byte
}

// readerBuffer is the stream reader's buffer: a few offers' worth.
const readerBuffer = 64 << 10

// maxRecord bounds the length a record header may announce: past it the
// header is taken for garbage, not for an event to wait for.
const maxRecord = 1 << 30

// NewReader reads the stream r, of JSON records when json is set, else
// of protobuf records.
func NewReader(r io.Reader, json bool) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, readerBuffer), json: json}
}

// Next reads the next event. Each offer of an OFFERS event goes to offer as
// it is decoded (o is the callee's to keep); with a nil offer they are put
// into the event, as a whole-record decoder would. An error means the
// stream cannot be read further; offers already handed on belong to a
// malformed event and must be dropped by the caller.
func (er *Reader) Next(offer func(o *mesos.Offer)) (*scheduler.Event, error) {
	n, err := er.header()
	if err != nil {
		return nil, err
	}
	rec := &record{r: er.r, left: n}
	var offers []mesos.Offer
	if offer == nil {
		offer = func(o *mesos.Offer) { offers = append(offers, *o) }
	}
	var ev *scheduler.Event
	if er.json {
		ev, err = er.decodeJSON(rec, offer)
	} else {
		ev, err = er.decodeProtobuf(rec, offer)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("decoding an event record of %d bytes: %w", n, err)
	}
	if offers != nil {
		ev.Offers.Offers = offers
	}
	return ev, nil
}

// header reads a record's length, skipping empty records.
func (er *Reader) header() (uint64, error) {
	for {
		// The length is decimal, at most 20 digits for a uint64.
		var digits [21]byte
		i := 0
		for {
			b, err := er.r.ReadByte()
			if err != nil {
				if err == io.EOF && i > 0 {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			if b == '\n' {
				break
			}
			if i == len(digits) {
				return 0, fmt.Errorf("RecordIO header longer than %d bytes", len(digits))
			}
			digits[i] = b
			i++
		}
		n, err := strconv.ParseUint(string(digits[:i]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("RecordIO header %q: %w", digits[:i], err)
		}
		if n > maxRecord {
			return 0, fmt.Errorf("RecordIO header announces %d bytes, more than %d", n, maxRecord)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// record reads one record's bytes off the stream, and no more.
type record struct {
	r    *bufio.Reader
	left uint64
}

func (r *record) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.left -= uint64(n)
	if err == io.EOF && r.left > 0 {
		err = io.ErrUnexpectedEOF
	} else if err == io.EOF {
		err = nil
	}
	return n, err
}

func (r *record) ReadByte() (byte, error) {
	if r.left == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	b, err := r.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	r.left--
	return b, nil
}

// appendN appends the next n bytes of the record to dst.
func (r *record) appendN(dst []byte, n uint64) ([]byte, error) {
	if n > r.left {
		return dst, fmt.Errorf("a field of %d bytes in the %d left of the record", n, r.left)
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	_, err := io.ReadFull(r, dst[start:])
	return dst, err
}

// The field numbers of scheduler.proto that the protobuf decoder follows:
// Event.offers (an Event.Offers) and Event.Offers.offers (each an Offer).
const (
	eventOffersField  = 3
	offersOfferField  = 1
	wireVarint        = 0
	wireFixed64       = 1
	wireLengthDelimed = 2
	wireFixed32       = 5
)

// decodeProtobuf reads an Event field by field: the offers one at a time,
// every other field copied as it is and decoded at the end.
func (er *Reader) decodeProtobuf(rec *record, offer func(*mesos.Offer)) (*scheduler.Event, error) {
	var rest []byte
	sawOffers := false
	for rec.left > 0 {
		key, err := binary.ReadUvarint(rec)
		if err != nil {
			return nil, fmt.Errorf("reading a field key: %w", err)
		}
		if key>>3 == eventOffersField && key&7 == wireLengthDelimed {
			n, err := binary.ReadUvarint(rec)
			if err != nil {
				return nil, fmt.Errorf("reading the length of the offers: %w", err)
			}
			if n > rec.left {
				return nil, fmt.Errorf("offers of %d bytes in the %d left of the record", n, rec.left)
			}
			other, err := er.protobufOffers(rec, rec.left-n, offer)
			if err != nil {
				return nil, err
			}
			sawOffers = true
			if len(other) > 0 {
				rest = binary.AppendUvarint(rest, key)
				rest = binary.AppendUvarint(rest, uint64(len(other)))
				rest = append(rest, other...)
			}
			continue
		}
		if rest, err = copyField(rec, rest, key); err != nil {
			return nil, err
		}
	}
	ev := new(scheduler.Event)
	if err := ev.Unmarshal(rest); err != nil {
		return nil, err
	}
	if sawOffers && ev.Offers == nil {
		ev.Offers = &scheduler.Event_Offers{}
	}
	return ev, nil
}

// protobufOffers decodes the Event.Offers message that ends when end bytes
// of the record are left, handing on each Offer; it returns the message's
// other fields, encoded.
func (er *Reader) protobufOffers(rec *record, end uint64, offer func(*mesos.Offer)) ([]byte, error) {
	var other []byte
	for i := 0; rec.left > end; {
		key, err := binary.ReadUvarint(rec)
		if err != nil {
			return nil, fmt.Errorf("reading a field key of the offers: %w", err)
		}
		if key>>3 != offersOfferField || key&7 != wireLengthDelimed {
			if other, err = copyField(rec, other, key); err != nil {
				return nil, err
			}
			continue
		}
		n, err := binary.ReadUvarint(rec)
		if err != nil {
			return nil, fmt.Errorf("reading the length of offer %d: %w", i, err)
		}
		if n > rec.left-end {
			return nil, fmt.Errorf("offer %d of %d bytes in the %d left of the offers", i, n, rec.left-end)
		}
		if er.buf, err = rec.appendN(er.buf[:0], n); err != nil {
			return nil, fmt.Errorf("reading offer %d: %w", i, err)
		}
		o := new(mesos.Offer)
		if err := o.Unmarshal(er.buf); err != nil {
			return nil, fmt.Errorf("decoding offer %d: %w", i, err)
		}
		offer(o)
		i++
	}
	if rec.left < end {
		return nil, fmt.Errorf("a field of the offers runs past their end")
	}
	if cap(er.buf) > readerBuffer {
		er.buf = nil // an unusually big offer: let its buffer go
	}
	return other, nil
}

// copyField appends the field of key, and its value read from rec, to dst.
func copyField(rec *record, dst []byte, key uint64) ([]byte, error) {
	dst = binary.AppendUvarint(dst, key)
	var err error
	switch key & 7 {
	case wireVarint:
		var v uint64
		if v, err = binary.ReadUvarint(rec); err == nil {
			dst = binary.AppendUvarint(dst, v)
		}
	case wireFixed64:
		dst, err = rec.appendN(dst, 8)
	case wireFixed32:
		dst, err = rec.appendN(dst, 4)
	case wireLengthDelimed:
		var n uint64
		if n, err = binary.ReadUvarint(rec); err == nil {
			dst = binary.AppendUvarint(dst, n)
			dst, err = rec.appendN(dst, n)
		}
	default:
		// Groups are not in Mesos' protos.
		return nil, fmt.Errorf("field %d: unsupported wire type %d", key>>3, key&7)
	}
	if err != nil {
		return nil, fmt.Errorf("reading field %d: %w", key>>3, err)
	}
	return dst, nil
}

// decodeJSON reads an Event object member by member: the offers one at a
// time, every other member kept as it is and decoded at the end.
func (er *Reader) decodeJSON(rec *record, offer func(*mesos.Offer)) (*scheduler.Event, error) {
	dec := json.NewDecoder(rec)
	rest := map[string]json.RawMessage{}
	if err := jsonDelim(dec, '{'); err != nil {
		return nil, err
	}
	sawOffers := false
	err := jsonMembers(dec, "", rest, func() error {
		other, err := jsonOffers(dec, offer)
		if err != nil {
			return err
		}
		sawOffers = true
		if len(other) > 0 {
			if rest["offers"], err = json.Marshal(other); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := jsonDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the event's object")
	}
	b, err := json.Marshal(rest)
	if err != nil {
		return nil, err
	}
	ev := new(scheduler.Event)
	if err := json.Unmarshal(b, ev); err != nil {
		return nil, err
	}
	if sawOffers && ev.Offers == nil {
		ev.Offers = &scheduler.Event_Offers{}
	}
	return ev, nil
}

// jsonOffers reads the value of an event's "offers" (an Event.Offers object,
// or null), handing on each offer, and returns its other members.
func jsonOffers(dec *json.Decoder, offer func(*mesos.Offer)) (map[string]json.RawMessage, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("reading \"offers\": %w", err)
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("\"offers\" is %v, not an object", tok)
	}
	other := map[string]json.RawMessage{}
	err = jsonMembers(dec, `"offers".`, other, func() error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("reading the offers: %w", err)
		}
		if tok == nil {
			return nil
		}
		if tok != json.Delim('[') {
			return fmt.Errorf("\"offers\".\"offers\" is %v, not an array", tok)
		}
		for i := 0; dec.More(); i++ {
			o := new(mesos.Offer)
			if err := dec.Decode(o); err != nil {
				return fmt.Errorf("decoding offer %d: %w", i, err)
			}
			offer(o)
		}
		return jsonDelim(dec, ']')
	})
	if err != nil {
		return nil, err
	}
	return other, jsonDelim(dec, '}')
}

// jsonMembers reads the members of an object whose '{' is read, up to its
// '}': the value of a member named "offers" is offers' to read, every other
// one is kept undecoded in rest. path, before a member's name, says in an
// error which object it is in.
func jsonMembers(dec *json.Decoder, path string, rest map[string]json.RawMessage, offers func() error) error {
	for dec.More() {
		key, err := jsonKey(dec)
		if err != nil {
			return err
		}
		if key == "offers" {
			if err := offers(); err != nil {
				return err
			}
			continue
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("reading %s%q: %w", path, key, err)
		}
		rest[key] = v
	}
	return nil
}

func jsonKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", fmt.Errorf("reading a member name: %w", err)
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("a member name is %v", tok)
	}
	return key, nil
}

func jsonDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("reading %q: %w", want, err)
	}
	if tok != want {
		return fmt.Errorf("%v where %q belongs", tok, want)
	}
	return nil
}

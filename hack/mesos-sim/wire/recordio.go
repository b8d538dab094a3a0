// Package wire holds the framing and encoding rules that the Mesos v1 HTTP
// APIs share between the scheduler and executor endpoints: RecordIO streams,
// the two content types, Accept negotiation and the decoding checks the real
// master applies before it looks at a call.
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// DefaultMaxRecordSize bounds one RecordIO record. Mesos itself caps protobuf
// messages at 64 MiB but mesos-go's reader stops at 4 MiB; we accept what a
// mesos-go client can read back, so records that could never round-trip are
// refused early.
const DefaultMaxRecordSize = 4 << 20

// maxLengthDigits is the textual length of the largest uint64; a header longer
// than this cannot be a valid record length.
const maxLengthDigits = 20

// ErrRecordTooLarge reports a record header announcing more than the reader's limit.
var ErrRecordTooLarge = errors.New("recordio: record exceeds maximum size")

// WriteRecord frames b as one RecordIO record: "<decimal length>\n<bytes>".
func WriteRecord(w io.Writer, b []byte) error {
	hdr := strconv.AppendInt(make([]byte, 0, maxLengthDigits+1), int64(len(b)), 10)
	hdr = append(hdr, '\n')
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("writing record header: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing record body: %w", err)
	}
	return nil
}

// Reader splits a RecordIO stream into records.
type Reader struct {
	r   *bufio.Reader
	max int
}

// NewReader returns a Reader refusing records larger than max bytes (<=0 means DefaultMaxRecordSize).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxRecordSize
	}
	return &Reader{r: bufio.NewReader(r), max: max}
}

// ReadRecord returns the next record. It returns io.EOF only at a clean record
// boundary; a stream cut inside a record gives io.ErrUnexpectedEOF.
func (rd *Reader) ReadRecord() ([]byte, error) {
	var n uint64
	digits := 0
	for {
		c, err := rd.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if digits == 0 {
					return nil, io.EOF
				}
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == '\n' {
			if digits == 0 {
				return nil, errors.New("recordio: empty record header")
			}
			break
		}
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("recordio: invalid byte %q in record header", c)
		}
		digits++
		if digits > maxLengthDigits {
			return nil, errors.New("recordio: record header too long")
		}
		n = n*10 + uint64(c-'0')
		if n > uint64(rd.max) {
			return nil, ErrRecordTooLarge
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(rd.r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

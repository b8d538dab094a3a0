package framework_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"strconv"
	"testing"

	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/framing"
	"github.com/mesos/mesos-go/api/v1/lib/recordio"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/broker/framework"
	"github.com/k8sm/k8sm/broker/mesos/eventstream"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/broker/offers/offerstest"
)

// heapAgents is the size the broker's memory target is set at (#16).
const heapAgents = 10000

// encodings are the subscription's two media types, by the names of the
// benchmarks' sub-benchmarks.
var encodings = []struct {
	name string
	mt   encoding.MediaType
}{{"protobuf", codecs.MediaTypeProtobuf}, {"json", codecs.MediaTypeJSON}}

// framed is ev as the master sends it on the subscription stream in mt:
// one RecordIO record.
func framed(b *testing.B, ev *scheduler.Event, mt encoding.MediaType) []byte {
	var rec []byte
	var err error
	if mt == codecs.MediaTypeJSON {
		rec, err = json.Marshal(ev)
	} else {
		rec, err = ev.Marshal()
	}
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte(strconv.Itoa(len(rec))+"\n"), rec...)
}

// decodeWhole reads the event of the record wire as the client did before
// eventstream: mesos-go's RecordIO reader and mt's decoder. The reader
// refuses a record over 4 MiB; a longer one is read with the smallest
// lifted limit that reads it (the reader starts with half of it). The
// decoder is returned for a caller to keep the reader's buffer live.
func decodeWhole(wire []byte, mt encoding.MediaType) (encoding.Decoder, *scheduler.Event, error) {
	var r io.Reader = bytes.NewReader(wire)
	src := func() framing.Reader { return recordio.NewReader(r) }
	if len(wire) > 4<<20 {
		src = func() framing.Reader { return recordio.NewReader(r, recordio.MaxMessageSize(16<<20)) }
	}
	dec := codecs.ByMediaType[mt].NewDecoder(src)
	got := new(scheduler.Event)
	return dec, got, dec.Decode(got)
}

// BenchmarkOffersEventHeap feeds one OFFERS event of heapAgents offers, as
// the master frames it on the subscription stream, through the event reader
// into the framework and its offer cache, old beside new:
//
//   - whole: mesos-go's RecordIO reader and decoder (what the client used
//     before eventstream; its reader refuses a record over 4 MiB, so the
//     JSON event, which main cannot read at all, is read with the limit
//     lifted to 16 MiB), then HandleEvent;
//   - stream: eventstream's reader handing each offer to the framework's
//     OfferBatch, then Commit.
//
// Metrics: wire-MiB, the record; held-MiB, live heap (after a full
// collection) once the event is read and before the cache takes it in
// (whole: the decoded event and the reader's buffer; stream: the batch's
// records); peak-MiB, the most of held and live heap once the cache holds
// the offers while the event is still referenced; cache-MiB, live heap after
// the event is dropped; alloc-MiB, all that reading and adding allocated.
//
//	go test -run '^$' -bench OffersEventHeap -benchtime=1x ./broker/framework
func BenchmarkOffersEventHeap(b *testing.B) {
	ev := &scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: offerstest.SimOffers(heapAgents)}}
	for _, enc := range encodings {
		mt, wire := enc.mt, framed(b, ev, enc.mt)
		for _, how := range []string{"whole", "stream"} {
			b.Run(enc.name+"/"+how, func(b *testing.B) {
				var held, peak, cache, alloc uint64
				for i := 0; i < b.N; i++ {
					c := offers.New(offers.Config{})
					f := framework.New(framework.Config{Cache: c})
					ctx := context.Background()
					base := offerstest.LiveHeap()
					var ms0, ms1 runtime.MemStats
					runtime.ReadMemStats(&ms0)
					var keep any
					switch how {
					case "whole":
						dec, got, err := decodeWhole(wire, mt)
						if err != nil {
							b.Fatal(err)
						}
						held = offerstest.LiveHeap() - base
						if err := f.HandleEvent(ctx, got); err != nil {
							b.Fatal(err)
						}
						keep = []any{dec, got}
					case "stream":
						r := eventstream.NewReader(bytes.NewReader(wire), mt == codecs.MediaTypeJSON)
						batch := f.NewOfferBatch()
						got, err := r.Next(batch.Offer)
						if err != nil {
							b.Fatal(err)
						}
						held = offerstest.LiveHeap() - base
						batch.Commit(ctx, got)
						keep = []any{r, got, batch}
					}
					peak = max(held, offerstest.LiveHeap()-base)
					runtime.ReadMemStats(&ms1)
					runtime.KeepAlive(keep)
					keep = nil
					cache = offerstest.LiveHeap() - base
					alloc = ms1.TotalAlloc - ms0.TotalAlloc
					if views, _ := c.Snapshot(); len(views) != heapAgents {
						b.Fatalf("%d agents in the cache, want %d", len(views), heapAgents)
					}
					runtime.KeepAlive(f)
				}
				b.ReportMetric(float64(len(wire))/(1<<20), "wire-MiB")
				b.ReportMetric(float64(held)/(1<<20), "held-MiB")
				b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
				b.ReportMetric(float64(cache)/(1<<20), "cache-MiB")
				b.ReportMetric(float64(alloc)/(1<<20), "alloc-MiB")
			})
		}
	}
}

// BenchmarkOffersEventTime is the time to read one OFFERS event of
// heapAgents offers and take it into the framework and its cache, as
// BenchmarkOffersEventHeap does it, without its collections.
//
//	go test -run '^$' -bench OffersEventTime -benchtime=10x ./broker/framework
func BenchmarkOffersEventTime(b *testing.B) {
	ev := &scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: offerstest.SimOffers(heapAgents)}}
	for _, enc := range encodings {
		mt, wire := enc.mt, framed(b, ev, enc.mt)
		for _, how := range []string{"whole", "stream"} {
			b.Run(enc.name+"/"+how, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					f := framework.New(framework.Config{Cache: offers.New(offers.Config{})})
					ctx := context.Background()
					b.StartTimer()
					switch how {
					case "whole":
						_, got, err := decodeWhole(wire, mt)
						if err != nil {
							b.Fatal(err)
						}
						if err := f.HandleEvent(ctx, got); err != nil {
							b.Fatal(err)
						}
					case "stream":
						batch := f.NewOfferBatch()
						got, err := eventstream.NewReader(bytes.NewReader(wire), mt == codecs.MediaTypeJSON).Next(batch.Offer)
						if err != nil {
							b.Fatal(err)
						}
						batch.Commit(ctx, got)
					}
				}
			})
		}
	}
}

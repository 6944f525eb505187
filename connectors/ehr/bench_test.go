package ehr

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
)

// nullLog stores nothing and answers every append as new, so that
// BenchmarkServeMLLP measures the CPU the source spends per message on
// the ingest path (parse, header, key, hash, lane, ACK) without the fsync
// that dominates it in production.
type nullLog struct{}

func (nullLog) Append(_ context.Context, e checkpoint.Entry) (checkpoint.Result, error) {
	return checkpoint.Result{Outcome: checkpoint.Appended, ID: 1, Ack: e.Ack}, nil
}

// BenchmarkServeMLLP is one ADT^A01 through MLLPSource.ServeMLLP: original
// mode (no MSH-15/16), and enhanced mode (MSH-15 AL, MSH-16 AL: two
// acknowledgments).
func BenchmarkServeMLLP(b *testing.B) {
	for _, c := range []struct{ name, ack string }{{"original", ""}, {"enhanced", "|||AL|AL"}} {
		b.Run(c.name, func(b *testing.B) {
			payload := []byte("MSH|^~\\&|EPIC|GENHOSP|EHRBRIDGE|CRM|20260105083000||ADT^A01^ADT_A01|M000123456|P|2.5.1" + c.ack + "\r" +
				"EVN|A01|20260105083000\r" +
				"PID|1||MRN12345^^^GENHOSP^MR||DOE^JANE^Q||19700101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701\r" +
				"PV1|1|I|4W^401^1^GENHOSP||||1234^WELBY^MARCUS\r")
			s := &MLLPSource{Name: "epic", Log: nullLog{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			req := &mllp.Request{Payload: payload, Received: time.Now()}
			if r := s.ServeMLLP(context.Background(), req); r == nil {
				b.Fatal("no reply")
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if r := s.ServeMLLP(context.Background(), req); r == nil {
					b.Fatal("no reply")
				}
			}
		})
	}
}

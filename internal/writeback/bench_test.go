package writeback

import (
	"strconv"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// BenchmarkMDM builds a note's MDM through the built-in mapping, against
// a baseline that sets the same fields directly in Go (what the mapping
// replaced): the price of letting a site edit the message.
func BenchmarkMDM(b *testing.B) {
	in := sampleNote()
	b.Run("mapping", func(b *testing.B) {
		mdm, err := LoadMDM("", mappings.Options{Zone: time.UTC})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := mdm.Build(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := directMDM(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// directMDM is the baseline: the built-in mapping's message, in Go.
func directMDM(in *NoteInput) (*hl7.Message, error) {
	m := hl7.NewMessage("MDM", in.Trigger, "MDM_T02", "2.5.1")
	header := [][2]string{{"MSH-3", in.Sender.Application}, {"MSH-4", in.Sender.Facility}, {"MSH-5", in.Receiver.Application},
		{"MSH-6", in.Receiver.Facility}, {"MSH-7", in.Modified}, {"MSH-10", in.ControlID}}
	for _, f := range header {
		if f[1] != "" {
			if err := m.Set(hl7.MustPath(f[0]), f[1]); err != nil {
				return nil, err
			}
		}
	}
	author := ""
	if in.Author != nil {
		author = in.Author.ID
	}
	segs := []struct {
		id     string
		fields [][2]string
	}{
		{"EVN", [][2]string{{"EVN-1", in.Trigger}, {"EVN-2", in.Modified}}},
		{"PID", [][2]string{{"PID-1", "1"}, {"PID-3.1", in.Patient.Identifier}, {"PID-3.4", in.Patient.Authority}, {"PID-3.5", "MR"}}},
		{"PV1", [][2]string{{"PV1-1", "1"}, {"PV1-2", "U"}, {"PV1-19.1", in.Visit}}},
		{"TXA", [][2]string{{"TXA-1", "1"}, {"TXA-2", "CN"}, {"TXA-3", "TX"}, {"TXA-4", in.Modified}, {"TXA-9.1", author},
			{"TXA-12.1", in.DocumentID}, {"TXA-13.1", in.Replaces}, {"TXA-17", "AU"}}},
	}
	for i, l := range in.Lines {
		segs = append(segs, struct {
			id     string
			fields [][2]string
		}{"OBX", [][2]string{{"OBX-1", strconv.Itoa(i + 1)}, {"OBX-2", "TX"}, {"OBX-3.1", "NOTE"}, {"OBX-3.2", "Coordinator note"},
			{"OBX-5", l.Text}, {"OBX-11", "F"}}})
	}
	for _, s := range segs {
		seg, err := m.AddSegment(s.id)
		if err != nil {
			return nil, err
		}
		for _, f := range s.fields {
			if f[1] != "" {
				if err := seg.Set(hl7.MustPath(f[0]), f[1]); err != nil {
					return nil, err
				}
			}
		}
	}
	return m, nil
}

// The mapping and the baseline build the same message.
func TestMDMMatchesBaseline(t *testing.T) {
	mdm, err := LoadMDM("", mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	in := sampleNote()
	got, err := mdm.Build(in)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := directMDM(in)
	if string(got.Bytes()) != string(want.Bytes()) {
		t.Errorf("mapping built\n%q\nbaseline\n%q", got.Bytes(), want.Bytes())
	}
}

package mllp

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/interop"
	"github.com/ehrbridge/ehrbridge/internal/shared"
)

// Our Client sends corpus messages to @medplum/hl7's receiver, in original
// mode (AA only) and enhanced mode (CA, then AA).
func TestInteropClientToMedplum(t *testing.T) {
	dir := interop.NodeDir(t)
	data, err := os.ReadFile(shared.Path(t, "corpus", "hl7v2", "microsoft-FHIR-Converter", "MDM-T02-01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	parts, err := hl7.Split(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"original", "enhanced"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"medplum_server.mjs"}
			if mode == "enhanced" {
				args = append(args, "--enhanced")
			}
			peer := interop.Start(t, dir, "node", args...)
			port := strings.TrimPrefix(peer.WaitFor(t, "LISTENING ", 20*time.Second), "LISTENING ")
			c := &Client{Addr: "127.0.0.1:" + port, Logger: quietLogger(), AckTimeout: 10 * time.Second}
			defer c.Close()
			for i := 0; i < 3; i++ {
				m, err := hl7.Parse(parts[0])
				if err != nil {
					t.Fatal(err)
				}
				id := "EB-" + mode + "-" + string(rune('1'+i))
				if err := m.Set(hl7.MustPath("MSH-10"), id); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				r, err := c.Send(ctx, m.Bytes())
				cancel()
				if err != nil {
					t.Fatalf("send %s: %v", id, err)
				}
				if r.Code != hl7.AA {
					t.Errorf("%s: code %s, want AA", id, r.Code)
				}
				if (r.Commit != nil) != (mode == "enhanced") {
					t.Errorf("%s: commit ack present = %v in %s mode", id, r.Commit != nil, mode)
				}
				if got := peer.WaitFor(t, "RECEIVED "+id, 5*time.Second); !strings.Contains(got, "MDM^T02") {
					t.Errorf("peer line %q", got)
				}
			}
		})
	}
}

// Against @medplum/hl7's receiver in enhanced mode (a CA from its
// connection, then the application ACK only where MSH-16 asks for one):
// a message with MSH-15 AL, MSH-16 NE succeeds on the CA without waiting
// for an application ACK that never comes; AL/AL gets the CA, then the AA;
// AL/ER (an application ACK on error only) succeeds when the CA is followed
// by QuietPeriod of silence.
func TestInteropClientEnhancedModeMedplum(t *testing.T) {
	dir := interop.NodeDir(t)
	peer := interop.Start(t, dir, "node", "medplum_server.mjs", "--enhanced", "--honour-msh16")
	port := strings.TrimPrefix(peer.WaitFor(t, "LISTENING ", 20*time.Second), "LISTENING ")
	c := &Client{Addr: "127.0.0.1:" + port, Logger: quietLogger(), AckTimeout: 5 * time.Second, QuietPeriod: 300 * time.Millisecond}
	defer c.Close()
	for _, tc := range []struct {
		id, msh15, msh16 string
		code             hl7.AckCode
		silent           bool
	}{
		{"ENH-NE-1", "AL", "NE", hl7.CA, false},
		{"ENH-AL-1", "AL", "AL", hl7.AA, false},
		{"ENH-ER-1", "AL", "ER", hl7.CA, true},
		{"ENH-NE-2", "AL", "NE", hl7.CA, false},
		{"ENH-AL-2", "AL", "AL", hl7.AA, false},
	} {
		m := []byte("MSH|^~\\&|EHRBRIDGE|CRM|EHR|HOSP|20260101120000||MDM^T02^MDM_T02|" + tc.id + "|P|2.5.1|||" +
			tc.msh15 + "|" + tc.msh16 + "\rEVN|T02|20260101120000\rTXA|1|CN|TX|||||||||EHRB-1||||||AU\r")
		start := time.Now()
		r, err := c.Send(context.Background(), m)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		if r.Code != tc.code || r.Commit == nil || !r.Accepted() || r.Silent != tc.silent {
			t.Errorf("%s (MSH-15 %s, MSH-16 %s): code %s commit %v accepted %v silent %v; want %s after a CA", tc.id, tc.msh15, tc.msh16,
				r.Code, r.Commit != nil, r.Accepted(), r.Silent, tc.code)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: answered after %v", tc.id, d)
		}
		peer.WaitFor(t, "RECEIVED "+tc.id, 5*time.Second)
	}
}

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

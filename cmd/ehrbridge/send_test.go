package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/mllptest"
)

func sendFile(t *testing.T, name, msh15, msh16 string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".hl7")
	m := "MSH|^~\\&|EHRBRIDGE|CRM|EHR|HOSP|20260101120000||MDM^T02^MDM_T02|" + name + "|P|2.5.1|||" + msh15 + "|" + msh16 + "\rEVN|T02|20260101120000\r"
	if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Nothing listens: "connection refused" at once, exit 1, and the other
// messages are not sent (the old client waited out --timeout per message).
func TestSendConnectionRefused(t *testing.T) {
	addr := mllptest.ClosedAddr(t)
	start := time.Now()
	out, errOut, code := runCLI(t, "send", "--to", addr, "--timeout", "3s", sendFile(t, "R1", "", ""), sendFile(t, "R2", "", ""))
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v to report a refused connection", d)
	}
	if code != exitFailure || !strings.HasPrefix(out, "R1 ERROR ") || !strings.Contains(out, "connection refused") || strings.Contains(out, "R2") {
		t.Errorf("exit %d, stdout %q: want R1 ERROR ... connection refused, R2 not sent", code, out)
	}
	if !strings.Contains(errOut, "2 of 2 message(s) not accepted (1 not sent") {
		t.Errorf("stderr %q", errOut)
	}
}

// A receiver that hangs up without an answer: one connection per message
// and a clear error, not a reconnect loop; --retries N resends N times,
// with backoff.
func TestSendHangUpPeer(t *testing.T) {
	peer := mllptest.NewPeer(t, func(*hl7.Message) []hl7.AckCode { return nil })
	addr, conns := peer.Addr, &peer.Conns
	start := time.Now()
	out, _, code := runCLI(t, "send", "--to", addr, "--timeout", "3s", sendFile(t, "H1", "", ""), sendFile(t, "H2", "", ""), sendFile(t, "H3", "", ""))
	took := time.Since(start)
	if code != exitFailure || strings.Count(out, " ERROR ") != 3 || !strings.Contains(out, "the connection ended before the acknowledgment") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 messages without --retries", n)
	}
	t.Logf("3 messages to a hang-up peer: %d connections in %v", conns.Load(), took)
	if took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	conns.Store(0)
	out, _, code = runCLI(t, "send", "--to", addr, "--timeout", "5s", "--retries", "2", sendFile(t, "H4", "", ""))
	if code != exitFailure || !strings.Contains(out, "gave up after 3 attempt(s)") {
		t.Errorf("--retries 2: exit %d, stdout %q", code, out)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("--retries 2: %d connections, want 3", n)
	}
}

// send waits for what MSH-15/MSH-16 ask for: AL/NE is accepted on the CA
// alone, AL/AL on the AA after the CA; an AE is not accepted.
func TestSendEnhancedMode(t *testing.T) {
	addr := mllptest.NewPeer(t, func(m *hl7.Message) []hl7.AckCode {
		h := m.Header()
		switch {
		case h.ControlID == "E3":
			return []hl7.AckCode{hl7.CA, hl7.AE}
		case h.AppAckType == "NE":
			return []hl7.AckCode{hl7.CA} // never an application ACK
		}
		return []hl7.AckCode{hl7.CA, hl7.AA}
	}).Addr
	out, errOut, code := runCLI(t, "send", "--to", addr, "--timeout", "3s", sendFile(t, "E1", "AL", "NE"), sendFile(t, "E2", "AL", "AL"))
	if code != exitOK || out != "E1 CA\nE2 AA\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want E1 CA, E2 AA, exit 0", code, out, errOut)
	}
	out, _, code = runCLI(t, "send", "--to", addr, "--timeout", "3s", sendFile(t, "E3", "AL", "AL"))
	if code != exitFailure || out != "E3 AE\n" {
		t.Errorf("AE: exit %d, stdout %q", code, out)
	}
}

package tests

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// chaosRuns is how many fault runs share `make chaos`'s KILLS: inbound to
// Salesforce and to Dataverse, write-back from each.
const chaosRuns = 4

// chaosKills is the least number of kills of one fault run: def in
// `make test`, the run's share of EHRBRIDGE_CHAOS_KILLS (make chaos
// KILLS=N) when that is larger.
func chaosKills(def int) int {
	n, err := strconv.Atoi(os.Getenv("EHRBRIDGE_CHAOS_KILLS"))
	if err != nil || n/chaosRuns <= def {
		return def
	}
	return n / chaosRuns
}

// chaosReport prints one run's counts in the form make chaos collects
// ("chaos: <run>: kills K, lost 0, ...") and fails the test unless every
// count is zero.
func chaosReport(t *testing.T, run string, kills int64, counts map[string]int) {
	t.Helper()
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	bad := false
	for _, k := range names {
		fmt.Fprintf(&b, ", %s %d", k, counts[k])
		bad = bad || counts[k] != 0
	}
	line := fmt.Sprintf("chaos: %s: kills %d%s", run, kills, b.String())
	fmt.Println(line) // make chaos greps these lines from go test's output
	if bad {
		t.Errorf("%s", line)
	}
}

// ackBook keeps the first acknowledgment of each message (by MSH-10) and
// counts the retransmits whose acknowledgment differs from it: a
// retransmit must get the stored ACK, byte for byte.
type ackBook struct {
	mu    sync.Mutex
	first map[string][]byte
	diff  int
}

func newAckBook() *ackBook { return &ackBook{first: map[string][]byte{}} }

func (a *ackBook) record(msg, ack []byte) {
	m, err := hl7.Parse(msg)
	if err != nil {
		return
	}
	id, _ := m.GetString("MSH-10")
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.first[id]; !ok {
		a.first[id] = append([]byte(nil), ack...)
	} else if !bytes.Equal(prev, ack) {
		a.diff++
	}
}

func (a *ackBook) differing() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.diff
}

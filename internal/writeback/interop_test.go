package writeback

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors"
	"github.com/ehrbridge/ehrbridge/connectors/ehr"
	"github.com/ehrbridge/ehrbridge/hl7/mllp"
	"github.com/ehrbridge/ehrbridge/internal/interop"
)

// Notes filed over MLLP into @medplum/hl7's receiver as the EHR: in
// original mode (AA), enhanced mode (CA, then AA), answering AR, which
// sets the note to Error with the EHR's answer at once, and answering AE,
// which has it resent until writeback ae_max_attempts (3 here), then Error.
func TestInteropMedplumEHR(t *testing.T) {
	dir := interop.NodeDir(t)
	for _, mode := range []struct {
		name   string
		args   []string
		status string
	}{
		{"original", nil, "Filed"},
		{"enhanced", []string{"--enhanced"}, "Filed"},
		{"rejecting", []string{"--ack", "AR"}, "Error"},
		{"erring", []string{"--ack", "AE"}, "Error"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			peer := interop.Start(t, dir, "node", append([]string{"medplum_server.mjs"}, mode.args...)...)
			port := strings.TrimPrefix(peer.WaitFor(t, "LISTENING ", 20*time.Second), "LISTENING ")
			r := newRig(t, func(string) connectors.EHRTarget {
				return &ehr.MLLPTarget{Client: &mllp.Client{Addr: "127.0.0.1:" + port, AckTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)}}
			})
			r.h.Cfg.AEMaxAttempts = 3
			acct := r.user(t, "POST", "Account", `{"LastName":"DOE","EHR_Patient_Key__c":"GENHOSP|M1"}`)
			task := r.user(t, "POST", "Task", `{"WhatId":"`+acct+`","Subject":"Call","Description":"Line one\nLine two","Send_to_EHR__c":true}`)
			r.poll(t)
			waitUntil(t, "status "+mode.status, func() bool { return r.task(t, task)["EHR_Status__c"] == mode.status })
			sends := 1
			if mode.name == "erring" {
				sends = 3
			}
			for i := 0; i < sends; i++ {
				line := peer.WaitFor(t, "RECEIVED ", 5*time.Second)
				if !strings.Contains(line, "MDM^T02") || !strings.HasSuffix(line, " EHRB-"+task) {
					t.Errorf("the EHR received %q", line)
				}
			}
			if mode.status == "Error" {
				if e, _ := r.task(t, task)["EHR_Error__c"].(string); !strings.HasPrefix(e, mode.args[1]) {
					t.Errorf("error text %q, want the EHR's %s", e, mode.args[1])
				}
			}
		})
	}
}

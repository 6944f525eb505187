package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The write journal: off until a test turns it on; then each Dataverse
// write by key is kept with its status, whether it created the row, its
// fields and its $batch, and so is how each request ended (answered, or
// dropped after commit); GET /sandbox/v1/journal?key=K returns the writes
// to that key and the ends of their batches only.
func TestWriteJournal(t *testing.T) {
	r := newDVRig(t, Options{})
	h := r.s.Handler()
	journal := func(key string) []JournalEntry {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/sandbox/v1/journal?key="+key, nil))
		var out []JournalEntry
		if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != 200 || err != nil {
			t.Fatalf("journal: %d %v", rec.Code, err)
		}
		return out
	}
	if st, _, _ := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='GH%7C0')", `{"lastname":"Before"}`); st != 204 {
		t.Fatalf("upsert: %d", st)
	}
	if js := journal(""); len(js) != 0 {
		t.Fatalf("journal kept %d entries before it was turned on", len(js))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/sandbox/v1/journal", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("journal on: %d", rec.Code)
	}

	// A single write: created, then updated.
	for range 2 {
		if st, _, _ := r.do(t, "PATCH", "contacts(msemr_medicalrecordnumber='GH%7C1')", `{"lastname":"One","firstname":"V1"}`); st != 204 {
			t.Fatalf("upsert: %d", st)
		}
	}
	// A $batch writing two keys, continuing past a refused part.
	part := func(method, path, body string) string {
		return "--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
			method + " " + r.base + "/api/data/v9.2/" + path + " HTTP/1.1\r\nContent-Type: application/json\r\n\r\n" + body + "\r\n"
	}
	body := part("PATCH", "contacts(msemr_medicalrecordnumber='GH%7C1')", `{"lastname":"One","firstname":"V2"}`) +
		part("PATCH", "contacts(msemr_medicalrecordnumber='GH%7C2')", `{"lastname":"Two"}`) +
		part("PATCH", "contacts(msemr_medicalrecordnumber='GH%7C1')", `{"lastname":"One","msemr_medicalrecordnumber":"GH|9"}`) +
		"--batch_x--\r\n"
	req, _ := http.NewRequest("POST", r.base+"/api/data/v9.2/$batch", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "multipart/mixed; boundary=batch_x")
	req.Header.Set("Prefer", "odata.continue-on-error")
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A write whose answer is dropped after commit.
	r.s.mu.Lock()
	r.s.dropP = 1
	r.s.mu.Unlock()
	dreq, _ := http.NewRequest("PATCH", r.base+"/api/data/v9.2/contacts(msemr_medicalrecordnumber='GH%7C1')", strings.NewReader(`{"lastname":"One","firstname":"V3"}`))
	dreq.Header.Set("Authorization", "Bearer "+r.token)
	dreq.Header.Set("Content-Type", "application/json")
	if resp, err := r.client.Do(dreq); err == nil {
		resp.Body.Close()
		t.Fatalf("the dropped write was answered %d", resp.StatusCode)
	}

	js := journal("GH|1")
	type row struct {
		object, key, outcome string
		status, parts        int
		created, inBatch     bool
		firstname            any
	}
	var got []row
	for _, e := range js {
		got = append(got, row{e.Object, e.Key, e.Outcome, e.Status, e.Parts, e.Created, e.Batch != 0, e.Fields["firstname"]})
	}
	want := []row{
		{object: "contacts", key: "msemr_medicalrecordnumber=GH|1", status: 204, created: true, firstname: "V1"},
		{object: "contacts", key: "msemr_medicalrecordnumber=GH|1", status: 204, firstname: "V1"},
		{object: "contacts", key: "msemr_medicalrecordnumber=GH|1", status: 204, inBatch: true, firstname: "V2"},
		{object: "contacts", key: "msemr_medicalrecordnumber=GH|1", status: 400, inBatch: true, firstname: nil},
		{object: "$batch", outcome: "answered", parts: 3},
		{object: "contacts", key: "msemr_medicalrecordnumber=GH|1", status: 204, firstname: "V3"},
		{object: "contacts", outcome: "dropped"},
	}
	if len(got) != len(want) {
		t.Fatalf("journal for GH|1: %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if js[2].Batch != js[4].Seq || js[3].Batch != js[4].Seq {
		t.Errorf("the batch's writes name batch %d and %d, its end is %d", js[2].Batch, js[3].Batch, js[4].Seq)
	}
	// GH|2's write is in the same batch; GH|0's came before the journal.
	if two := journal("GH|2"); len(two) != 2 || two[0].Key != "msemr_medicalrecordnumber=GH|2" || two[1].Outcome != "answered" {
		t.Errorf("journal for GH|2: %+v", two)
	}
	if zero := journal("GH|0"); len(zero) != 0 {
		t.Errorf("journal for GH|0: %+v", zero)
	}
}

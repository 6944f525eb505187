package ehr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ehrbridge/ehrbridge/mappings"
)

// Patient resolution: an Encounter, Observation, Condition or
// AllergyIntolerance names its patient by reference ("Patient/123"); the
// mappings key the patient's CRM record by an identifier (patient_key()).
// The source turns one into the other: the key of a Patient it stored is
// remembered as it is appended, and a Patient it has not seen is read from
// the server. A reference that cannot be resolved yet is an
// mappings.ErrWait: the record waits (retrying), it is never written as an
// orphan.

// maxCachedPatients bounds the cache; past it the cache starts afresh.
const maxCachedPatients = 100_000

// patientCache maps "Patient/<id>" to the patient's key.
type patientCache struct {
	mu   sync.Mutex
	keys map[string]string
}

func (c *patientCache) get(ref string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[ref]
	return k, ok
}

func (c *patientCache) put(ref, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil || len(c.keys) >= maxCachedPatients {
		c.keys = map[string]string{}
	}
	c.keys[ref] = key
}

// PatientKey implements mappings.PatientResolver: the key the mappings
// give the referenced Patient (the lane: of the set's Patient mapping),
// from the cache or read from the server.
func (s *FHIRSource) PatientKey(ref string) (string, error) {
	id := mappings.PatientID(ref)
	if id == "" {
		return "", nil
	}
	norm := "Patient/" + id
	if k, ok := s.patients.get(norm); ok {
		return k, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, body, err := s.Client.Do(ctx, http.MethodGet, "/Patient/"+url.PathEscape(id), nil, nil)
	switch {
	case err != nil:
		return "", mappings.Wait("the referenced Patient could not be read from the FHIR server (unreachable)")
	case status == http.StatusNotFound || status == http.StatusGone:
		return "", mappings.Wait(fmt.Sprintf("the referenced Patient is not on the FHIR server (HTTP %d); waiting for it", status))
	case status != http.StatusOK:
		return "", mappings.Wait(fmt.Sprintf("the referenced Patient could not be read from the FHIR server (HTTP %d)", status))
	}
	var head resourceHead
	if err := json.Unmarshal(body, &head); err != nil || head.ResourceType != "Patient" {
		return "", mappings.Wait("the FHIR server answered the Patient read with something else")
	}
	key := s.patientKeyOf(head, body)
	s.patients.put(norm, key)
	return key, nil
}

// patientKeyOf is the key the mappings give a Patient resource: the lane
// of the set's Patient mapping, else its id.
func (s *FHIRSource) patientKeyOf(head resourceHead, raw []byte) string {
	if s.Mappings != nil {
		if set := s.Mappings(); set != nil {
			if l, err := set.Lane(mappings.Input{FHIR: raw}); err == nil && l != "" {
				return l
			}
		}
	}
	return head.ID
}

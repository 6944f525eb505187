package mappings

import (
	"errors"
	"strings"
)

// PatientResolver turns a FHIR reference to a patient ("Patient/123",
// "https://ehr/fhir/R4/Patient/123/_history/2", "urn:uuid:...") into the
// patient's key: the lane of the set's Patient mapping applied to the
// referenced Patient resource, so that an Encounter's lane and its
// reference to the patient's CRM record use the same identifier as the
// patient itself (for example the MRN with its authority, as HL7 does).
type PatientResolver interface {
	PatientKey(ref string) (string, error)
}

// ErrWait marks a mapping failure that time may cure: the data it needs
// (a referenced Patient) is not there yet. The pipeline retries such a
// record later instead of writing an orphan or giving up on it.
var ErrWait = errors.New("waiting for data that has not arrived yet")

// PatientID returns the logical id a patient reference names ("" when it
// names no patient): "Patient/123" and "https://ehr/fhir/R4/Patient/123/
// _history/2" give "123", "urn:uuid:abc" gives "abc".
func PatientID(ref string) string {
	if id, ok := strings.CutPrefix(ref, "urn:uuid:"); ok {
		return id
	}
	i := strings.LastIndex(ref, "Patient/")
	if i < 0 || i > 0 && ref[i-1] != '/' {
		return ""
	}
	id, _, _ := strings.Cut(ref[i+len("Patient/"):], "/")
	return id
}

// StaticPatients resolves references from a fixed table (mapping tests'
// patients:); a reference not in it is not resolved yet (ErrWait).
type StaticPatients map[string]string

// PatientKey implements PatientResolver.
func (s StaticPatients) PatientKey(ref string) (string, error) {
	if k, ok := s[ref]; ok {
		return k, nil
	}
	if k, ok := s["Patient/"+PatientID(ref)]; ok && PatientID(ref) != "" {
		return k, nil
	}
	return "", errPatientWait
}

var errPatientWait = &waitError{"the referenced Patient is not resolved yet"}

// waitError is an ErrWait with its own text (no values in it).
type waitError struct{ msg string }

func (w *waitError) Error() string        { return w.msg }
func (w *waitError) Is(target error) bool { return target == ErrWait }

// Wait makes an ErrWait with a message (which must hold no patient data).
func Wait(msg string) error { return &waitError{msg} }

// evalPatientKey is patient_key(reference): the referenced patient's key
// from the input's resolver; without one (ehrbridge map, tests without
// patients:), the reference's logical id.
func evalPatientKey(e *env, c *call) (Value, error) {
	v, err := c.arg(e, 0)
	if err != nil || v.empty() {
		return v, err
	}
	ref := textOf(v)
	if e.patients == nil {
		if id := PatientID(ref); id != "" {
			return Str(id), nil
		}
		return Value{}, nil
	}
	if PatientID(ref) == "" {
		return Value{}, nil // not a reference to a Patient (a Group, a Device): no patient
	}
	k, err := e.patients.PatientKey(ref)
	if err != nil {
		return Value{}, err
	}
	if k == "" {
		return Value{}, nil
	}
	return Str(k), nil
}

package connectors

import (
	"context"
	"strconv"
	"time"
)

// NoteReader is where the coordinators' notes live, seen by write-back:
// the few reads and the one write it makes, over Salesforce (SOQL, sObject
// update; salesforce.NoteReader) or Dataverse (OData queries, PATCH;
// dynamics.NoteReader).
type NoteReader interface {
	// Find returns the records of q.Object matching every condition.
	Find(ctx context.Context, q Query) ([]map[string]any, error)
	// Update writes fields on the record with id.
	Update(ctx context.Context, object, id string, fields map[string]any) error
	// IDField is the primary key field of an object (Id; contactid).
	IDField(object string) string
	// Flavor is "salesforce" or "dataverse", for the defaults of
	// write-back's configuration.
	Flavor() string
}

// Query is one read: fields of object's records matching Where (all of
// them), ordered by OrderBy (descending with Desc, nulls last), at most
// Limit (0: no limit).
type Query struct {
	Object  string
	Fields  []string
	Where   []Cond
	OrderBy string
	Desc    bool
	Limit   int
}

// Cond compares a field with a value: Op is "=", "!=" or ">". Values are
// text, bool, int or time.Time.
type Cond struct {
	Field, Op string
	Value     any
}

// Literal writes a Cond's value as a query literal, its text through
// text: SOQL and OData agree on everything else.
func Literal(v any, text func(string) string) string {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05Z")
	case string:
		return text(x)
	}
	return "null"
}

// Note is one note version as write-back stores it in the checkpoint log
// (its JSON is the record's payload).
type Note struct {
	ID       string `json:"id"`
	WhatID   string `json:"what_id"`
	Subject  string `json:"subject"`
	Text     string `json:"text"`
	OwnerID  string `json:"owner_id"`
	Modstamp string `json:"modstamp"`
	// EncounterID is the encounter the note is linked to by the
	// configured link field.
	EncounterID string `json:"encounter_id,omitempty"`
	// Filed is the document id the note was already filed under, for an
	// edit (a replacement of that document).
	Filed string `json:"filed,omitempty"`
	// Version identifies the content: an edit is a new version, a status
	// update is not.
	Version string `json:"version"`
}

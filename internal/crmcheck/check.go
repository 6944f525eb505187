package crmcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ehrbridge/ehrbridge/internal/config"
	"github.com/ehrbridge/ehrbridge/internal/daemon"
	"github.com/ehrbridge/ehrbridge/internal/writeback"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// ErrConfig wraps what makes the check impossible to run: no CRM
// configured, a mapping set that does not compile, a secret that cannot
// be read. The command exits 2 on it.
var ErrConfig = errors.New("crm check cannot run")

// Options tune a check.
type Options struct {
	// Logger gets the connectors' own warnings; default discards them.
	Logger *slog.Logger
}

// backend is one CRM's side of the check.
type backend interface {
	kind() string                // "salesforce" or "dataverse"
	source(object string) string // names an object's metadata in messages
	endpoint() string            // the URL checked
	// login signs in; a failure is explained in the admin's terms.
	login(ctx context.Context) (ok bool, msg string)
	// describe returns an object's metadata document as fetched; found
	// is false when the CRM has no such object.
	describe(ctx context.Context, object string) (doc []byte, found bool, err error)
	// fields reads the fields of a document describe returned.
	fields(doc []byte) map[string]fieldInfo
	// missingObject says what a missing object means.
	missingObject(object string) string
	// extra adds the CRM's own checks (allocation, older keys).
	extra(ctx context.Context, r *Report, described map[string][]byte)
	close()
}

// fieldInfo is what the write-back check needs of a field.
type fieldInfo struct {
	name       string
	updateable bool
}

// Run checks the CRM cfg names against cfg's mapping set and write-back.
// The error is ErrConfig-wrapped when nothing could be checked; a CRM
// that refuses the login is a report with a blocker.
func Run(ctx context.Context, cfg *config.Config, opts Options) (*Report, error) {
	if cfg.CRM == nil {
		return nil, fmt.Errorf("%w: the config names no CRM (crm: salesforce, dynamics or sandbox)", ErrConfig)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// The set must compile on its own before the CRM can say anything
	// about it: this is lint's job, without schemas.
	mopts, err := daemon.MappingOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	mopts.Schemas, mopts.OnSchemaCheck = nil, nil
	var set *mappings.Set
	if len(cfg.Mappings.Paths) > 0 {
		if set, err = mappings.Load(cfg.Mappings.Paths, mopts); err != nil {
			return nil, fmt.Errorf("%w: the mapping set does not lint (run ehrbridge lint --config):\n%v", ErrConfig, err)
		}
	} else {
		set = &mappings.Set{}
	}
	b, err := newBackend(ctx, cfg.CRM, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	defer b.close()
	r := &Report{CRM: b.kind(), Endpoint: b.endpoint()}
	defer r.finish()

	ok, msg := b.login(ctx)
	r.add(Item{Object: GroupConnection, Check: CheckLogin, OK: ok, Blocker: !ok, Message: msg})
	if !ok {
		r.finish()
		return r, nil
	}

	var wb *writeback.Config
	if cfg.Writeback != nil {
		c := daemon.WritebackConfig(cfg.Writeback).WithDefaults(b.kind())
		wb = &c
	}
	objects, where, err := objectsOf(set)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	for _, o := range writebackObjects(wb) {
		objects = appendObject(objects, o)
	}

	schemas := mappings.NewSchemas()
	described := map[string][]byte{} // by object name as the mappings write it
	for _, o := range objects {
		doc, found, err := b.describe(ctx, o)
		switch {
		case err != nil:
			r.add(Item{Object: o, Check: CheckObject, Blocker: true, Message: "cannot be described: " + errMessage(err), Pos: where[strings.ToLower(o)]})
			continue
		case !found:
			r.add(Item{Object: o, Check: CheckObject, Blocker: true, Message: b.missingObject(o), Pos: where[strings.ToLower(o)]})
			continue
		}
		if err := schemas.Add(b.source(o), doc); err != nil {
			r.add(Item{Object: o, Check: CheckObject, Blocker: true, Message: "its metadata cannot be read: " + err.Error(), Pos: where[strings.ToLower(o)]})
			continue
		}
		described[o] = doc
		r.add(Item{Object: o, Check: CheckObject, OK: true})
	}

	if len(cfg.Mappings.Paths) > 0 {
		mopts.Schemas = schemas
		mopts.OnSchemaCheck = func(c mappings.SchemaCheck) {
			r.add(Item{Object: objectGroup(objects, c.Object), Field: c.Field, Check: c.Check, OK: c.OK, Blocker: !c.OK, Message: c.Msg,
				Pos: fmt.Sprintf("%s:%d:%d", displayPath(c.File), c.Line, c.Col), Mapping: c.Mapping, Op: c.Op})
		}
		// Failed checks are in the report; the error repeats them.
		_, _ = mappings.Load(cfg.Mappings.Paths, mopts)
	}
	if wb != nil {
		checkWriteback(r, b, wb, described)
	}
	b.extra(ctx, r, described)
	sortByObject(r, objects)
	return r, nil
}

// objectGroup is the name the checklist groups an object under: as the
// mappings write it when they name it, case aside.
func objectGroup(objects []string, name string) string {
	for _, o := range objects {
		if strings.EqualFold(o, name) {
			return o
		}
	}
	return name
}

// sortByObject keeps the connection first, then the objects in the order
// they were described, then the limits; within a group, the order checked.
func sortByObject(r *Report, objects []string) {
	rank := map[string]int{GroupConnection: -1, GroupLimits: len(objects) + 1}
	for i, o := range objects {
		rank[o] = i
	}
	sort.SliceStable(r.Checks, func(i, j int) bool { return rank[r.Checks[i].Object] < rank[r.Checks[j].Object] })
}

// objectsOf lists the objects a mapping set writes or refers to (ref()),
// in the order of its files, with where each is first named.
func objectsOf(set *mappings.Set) ([]string, map[string]string, error) {
	var out []string
	where := map[string]string{}
	for _, u := range set.Objects() {
		out = appendObject(out, u.Object)
		if _, ok := where[strings.ToLower(u.Object)]; !ok {
			where[strings.ToLower(u.Object)] = fmt.Sprintf("%s:%d:%d", displayPath(u.File), u.Line, u.Col)
		}
	}
	return out, where, nil
}

// displayPath shows a mapping file relative to the working directory
// when it lies below it (the config resolves paths to absolute ones).
func displayPath(file string) string {
	wd, err := os.Getwd()
	if err != nil {
		return file
	}
	rel, err := filepath.Rel(wd, file)
	if err != nil || strings.HasPrefix(rel, "..") {
		return file
	}
	return rel
}

func appendObject(list []string, o string) []string {
	if o == "" {
		return list
	}
	for _, have := range list {
		if strings.EqualFold(have, o) {
			return list
		}
	}
	return append(list, o)
}

// writebackObjects are the objects write-back reads and writes.
func writebackObjects(wb *writeback.Config) []string {
	if wb == nil {
		return nil
	}
	out := []string{wb.Object, wb.PatientObject}
	if wb.EncounterRule != writeback.EncounterNone {
		out = append(out, wb.EncounterObject)
	}
	if wb.AuthorField != "" {
		out = append(out, wb.AuthorObject)
	}
	return out
}

// checkWriteback checks that the fields write-back reads exist and that
// the status fields it writes are writable by the integration user.
func checkWriteback(r *Report, b backend, wb *writeback.Config, described map[string][]byte) {
	type want struct {
		object, field string
		write         bool
	}
	wants := []want{
		{wb.Object, wb.FlagField, false}, {wb.Object, wb.WhatField, false}, {wb.Object, wb.SubjectField, false},
		{wb.Object, wb.TextField, false}, {wb.Object, wb.OwnerField, false}, {wb.Object, wb.ModifiedField, false},
		{wb.Object, wb.StatusField, true}, {wb.Object, wb.DocIDField, true}, {wb.Object, wb.FiledAtField, true}, {wb.Object, wb.ErrField, true},
		{wb.PatientObject, wb.PatientKeyField, false},
	}
	if wb.EncounterLinkField != "" {
		wants = append(wants, want{wb.Object, wb.EncounterLinkField, false})
	}
	if wb.EncounterRule != writeback.EncounterNone {
		wants = append(wants, want{wb.EncounterObject, wb.EncounterKeyField, false}, want{wb.EncounterObject, wb.EncounterPatientField, false},
			want{wb.EncounterObject, wb.EncounterStartField, false}, want{wb.EncounterObject, wb.EncounterStatusField, false})
	}
	if wb.AuthorField != "" {
		wants = append(wants, want{wb.AuthorObject, wb.AuthorField, false})
	}
	cache := map[string]map[string]fieldInfo{}
	for _, w := range wants {
		doc, ok := described[w.object]
		if !ok {
			continue // the object's own line is the blocker
		}
		fs, ok := cache[w.object]
		if !ok {
			fs = b.fields(doc)
			cache[w.object] = fs
		}
		f, ok := fs[strings.ToLower(attributeOf(w.field))]
		it := Item{Object: w.object, Field: w.field, Check: CheckWBField, OK: ok, Blocker: !ok}
		if !ok {
			it.Message = fmt.Sprintf("write-back needs %s on %s: create it (docs/setup-%s.md), or name the one in use in the config's writeback section", w.field, w.object, guide(b.kind()))
			r.add(it)
			continue
		}
		r.add(it)
		if w.write {
			it := Item{Object: w.object, Field: w.field, Check: CheckWBWritable, OK: f.updateable, Blocker: !f.updateable}
			if !f.updateable {
				it.Message = fmt.Sprintf("the integration user cannot update %s.%s: give its profile / security role edit access to the field (field-level security), and check it is not a formula or read-only field", w.object, w.field)
			}
			r.add(it)
		}
	}
}

// attributeOf is the column behind a Dataverse lookup value property
// (_regardingobjectid_value → regardingobjectid); other names unchanged.
func attributeOf(field string) string {
	if strings.HasPrefix(field, "_") && strings.HasSuffix(field, "_value") && len(field) > len("__value") {
		return field[1 : len(field)-len("_value")]
	}
	return field
}

func guide(kind string) string {
	if kind == "dataverse" {
		return "dataverse"
	}
	return "salesforce"
}

// errMessage is a connector error in words: its code and the CRM's
// message (metadata requests carry no patient data).
func errMessage(err error) string {
	var ce interface{ Detail() string }
	if errors.As(err, &ce) {
		return ce.Detail()
	}
	return err.Error()
}

// rawFields decodes a JSON document into v, ignoring errors (a document
// Add accepted is JSON).
func rawFields(doc []byte, v any) { _ = json.Unmarshal(doc, v) }

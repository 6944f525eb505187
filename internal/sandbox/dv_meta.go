package sandbox

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// The read-only metadata calls of the Web API, as "Query table
// definitions using the Web API" documents them
// (https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query-metadata-web-api):
//
//	GET EntityDefinitions(LogicalName='x')?$select=...&$expand=Attributes,Keys,ManyToOneRelationships
//	GET EntityDefinitions(LogicalName='x')/Attributes[/Microsoft.Dynamics.CRM.<Type>AttributeMetadata]?$select=...&$expand=OptionSet
//	GET EntityDefinitions(LogicalName='x')/Attributes(LogicalName='y')
//	GET EntityDefinitions(LogicalName='x')/Keys, .../ManyToOneRelationships
//	GET EntityDefinitions?$select=LogicalName,EntitySetName[&$filter=LogicalName eq 'x' or ...]
//
// "The MetadataId property value is always returned" (same page); the
// sandbox derives it from the logical name, so it is stable. $select is
// honoured on the entity and the attributes; $expand decides which of
// Attributes, Keys, ManyToOneRelationships and OptionSet (a navigation
// property of the picklist, state and status attribute types, returned
// only when expanded) are included. A table the schema does not know is
// answered as Dataverse answers RetrieveEntity for a missing table: 404,
// 0x80041102 "The entity with a name = 'x' with namemapping = 'Logical'
// was not found in the MetadataCache." (quoted with its code in
// https://github.com/MscrmTools/MscrmTools.PortalCodeEditor/issues/15).
// Only tables with a schema are served: the sandbox knows no more.

const dvNoEntity = "0x80041102" // the entity was not found in the MetadataCache

// dvMetaID is a stable MetadataId for a definition.
func dvMetaID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// dvMetadata serves GET EntityDefinitions...; path is below the version.
func (s *Server) dvMetadata(w http.ResponseWriter, r *http.Request, version, path string) {
	// The sandbox serves only the read calls; Dataverse also takes
	// POST/PUT/DELETE here (creating and changing definitions), so this
	// refusal and its text are the sandbox's own.
	if r.Method != http.MethodGet {
		writeDVError(w, dverr(http.StatusMethodNotAllowed, dvBadRequest, "The request method %s is not supported on table definitions by the sandbox.", r.Method))
		return
	}
	s.count("dv_metadata")
	base := dvBase(r, version)
	q := r.URL.Query()
	sel := splitList(q.Get("$select"))
	expand := q.Get("$expand")
	schema := s.st.dvTables()
	rest := strings.TrimPrefix(path, "EntityDefinitions")
	if rest == "" {
		want, derr := metaFilter(q.Get("$filter"))
		if derr != nil {
			writeDVError(w, derr)
			return
		}
		out := []map[string]any{}
		for _, name := range sortedTableNames(schema) {
			if want == nil || want[name] {
				out = append(out, dvEntityJSON(schema.tables[name], sel, expand))
			}
		}
		writeDVJSON(w, http.StatusOK, map[string]any{"@odata.context": base + "$metadata#EntityDefinitions(" + strings.Join(sel, ",") + ")", "value": out})
		return
	}
	name, sub, ok := cutKeyPart(rest, "LogicalName")
	if !ok {
		writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Bad Request - Error in query syntax."))
		return
	}
	t := schema.tables[strings.ToLower(name)]
	if t == nil {
		writeDVError(w, dverr(http.StatusNotFound, dvNoEntity, "The entity with a name = '%s' with namemapping = 'Logical' was not found in the MetadataCache.", name))
		return
	}
	ctx := base + "$metadata#EntityDefinitions('" + t.name + "')"
	switch {
	case sub == "":
		body := dvEntityJSON(t, sel, expand)
		body["@odata.context"] = base + "$metadata#EntityDefinitions(" + strings.Join(sel, ",") + ")/$entity"
		writeDVJSON(w, http.StatusOK, body)
	case sub == "/Keys":
		writeDVJSON(w, http.StatusOK, map[string]any{"@odata.context": ctx + "/Keys", "value": dvKeysJSON(t)})
	case sub == "/ManyToOneRelationships":
		writeDVJSON(w, http.StatusOK, map[string]any{"@odata.context": ctx + "/ManyToOneRelationships", "value": dvRelsJSON(t)})
	case sub == "/Attributes" || strings.HasPrefix(sub, "/Attributes/"):
		cast := strings.TrimPrefix(strings.TrimPrefix(sub, "/Attributes"), "/")
		if cast != "" && (!strings.HasPrefix(cast, "Microsoft.Dynamics.CRM.") || !strings.HasSuffix(cast, "AttributeMetadata")) {
			writeDVError(w, dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", cast))
			return
		}
		out := []map[string]any{}
		for _, a := range t.def.Attributes {
			if cast != "" && a.ODataType != "#"+cast {
				continue
			}
			out = append(out, dvAttributeJSON(t, a, sel, expand, cast == ""))
		}
		c := ctx + "/Attributes"
		if cast != "" {
			c += "/" + cast
		}
		writeDVJSON(w, http.StatusOK, map[string]any{"@odata.context": c + "(" + strings.Join(sel, ",") + ")", "value": out})
	case strings.HasPrefix(sub, "/Attributes("):
		col, tail, ok := cutKeyPart(strings.TrimPrefix(sub, "/Attributes"), "LogicalName")
		if !ok || tail != "" {
			writeDVError(w, dverr(http.StatusBadRequest, dvBadRequest, "Bad Request - Error in query syntax."))
			return
		}
		a := t.cols[strings.ToLower(col)]
		if a == nil {
			// 404 ObjectDoesNotExist; the text is the sandbox's (no
			// source quotes Dataverse's answer for a missing column).
			writeDVError(w, dverr(http.StatusNotFound, dvNotFound, "Could not find attribute with LogicalName '%s' on entity '%s'.", col, t.name))
			return
		}
		body := dvAttributeJSON(t, a, sel, expand, true)
		body["@odata.context"] = ctx + "/Attributes/$entity"
		writeDVJSON(w, http.StatusOK, body)
	default:
		seg := strings.TrimPrefix(sub, "/")
		if i := strings.IndexAny(seg, "/("); i >= 0 {
			seg = seg[:i]
		}
		writeDVError(w, dverr(http.StatusNotFound, dvNoSegment, "Resource not found for the segment '%s'.", seg))
	}
}

// cutKeyPart reads "(Prop='v')rest" or "('v')rest" and returns v and rest.
func cutKeyPart(s, prop string) (val, rest string, ok bool) {
	if !strings.HasPrefix(s, "(") {
		return "", "", false
	}
	end := strings.Index(s, "')")
	if end < 0 {
		return "", "", false
	}
	inner := s[1:end]
	inner = strings.TrimPrefix(inner, prop+"=")
	if !strings.HasPrefix(inner, "'") {
		return "", "", false
	}
	return strings.ReplaceAll(inner[1:], "''", "'"), s[end+2:], true
}

func splitList(v string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || (v[i] == ',' && depth == 0) {
			if p := strings.TrimSpace(v[start:i]); p != "" {
				out = append(out, p)
			}
			start = i + 1
			continue
		}
		switch v[i] {
		case '(':
			depth++
		case ')':
			depth--
		}
	}
	return out
}

// expands reports whether $expand names a navigation property.
func expands(expand, name string) bool {
	for _, p := range splitList(expand) {
		if i := strings.IndexByte(p, '('); i >= 0 {
			if strings.Contains(p[i:], name) {
				return true // a nested $expand (Attributes($expand=OptionSet))
			}
			p = p[:i]
		}
		if strings.EqualFold(strings.TrimSpace(p), name) {
			return true
		}
	}
	return false
}

func sortedTableNames(s *dvSchemaSet) []string {
	out := make([]string, 0, len(s.tables))
	for n := range s.tables {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// toMap turns a definition into its JSON object.
func toMap(v any) map[string]any {
	data, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}

// selectProps keeps the selected properties (all when sel is empty) and
// those always returned.
func selectProps(m map[string]any, sel []string, keep ...string) map[string]any {
	if len(sel) == 0 {
		return m
	}
	out := map[string]any{}
	for _, k := range append(keep, sel...) {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func dvEntityJSON(t *dvTableSchema, sel []string, expand string) map[string]any {
	d := *t.def
	d.Attributes, d.Keys, d.ManyToOneRelationships = nil, nil, nil
	m := toMap(d)
	m["MetadataId"] = dvMetaID(t.name)
	m["IsActivity"] = t.Activity
	m = selectProps(m, sel, "MetadataId")
	if expands(expand, "Attributes") {
		attrs := []map[string]any{}
		for _, a := range t.def.Attributes {
			attrs = append(attrs, dvAttributeJSON(t, a, nil, expand, true))
		}
		m["Attributes"] = attrs
	}
	if expands(expand, "Keys") {
		m["Keys"] = dvKeysJSON(t)
	}
	if expands(expand, "ManyToOneRelationships") {
		m["ManyToOneRelationships"] = dvRelsJSON(t)
	}
	return m
}

// dvAttributeJSON is one AttributeMetadata; typed adds @odata.type (the
// base-type collection names each item's derived type, a cast's does
// not need to).
func dvAttributeJSON(t *dvTableSchema, a *dvAttribute, sel []string, expand string, typed bool) map[string]any {
	m := toMap(a)
	m["MetadataId"] = dvMetaID(t.name, a.LogicalName)
	if !expands(expand, "OptionSet") {
		delete(m, "OptionSet")
	} else if set, ok := m["OptionSet"].(map[string]any); ok {
		set["MetadataId"] = dvMetaID(t.name, a.LogicalName, "optionset")
	}
	keep := []string{"MetadataId"}
	if expands(expand, "OptionSet") {
		keep = append(keep, "OptionSet")
	}
	if typed {
		keep = append(keep, "@odata.type")
	} else {
		delete(m, "@odata.type")
	}
	return selectProps(m, sel, keep...)
}

func dvKeysJSON(t *dvTableSchema) []map[string]any {
	out := []map[string]any{}
	for _, k := range t.def.Keys {
		m := toMap(k)
		m["MetadataId"] = dvMetaID(t.name, "key", k.LogicalName)
		m["EntityLogicalName"] = t.name
		out = append(out, m)
	}
	return out
}

func dvRelsJSON(t *dvTableSchema) []map[string]any {
	out := []map[string]any{}
	for _, r := range t.def.ManyToOneRelationships {
		m := toMap(r)
		m["MetadataId"] = dvMetaID(t.name, "rel", r.SchemaName, r.ReferencingEntityNavigationPropertyName)
		if m["ReferencingEntity"] == nil {
			m["ReferencingEntity"] = t.name
		}
		out = append(out, m)
	}
	return out
}

// metaFilter reads the $filter the sandbox supports on EntityDefinitions:
// LogicalName eq 'x', joined by or. Any other filter is refused rather
// than ignored (a client would take the unfiltered list for an answer).
func metaFilter(f string) (map[string]bool, *dvError) {
	f = strings.TrimSpace(f)
	if f == "" {
		return nil, nil
	}
	want := map[string]bool{}
	for _, term := range strings.Split(f, " or ") {
		term = strings.Trim(strings.TrimSpace(term), "()")
		prop, val, ok := strings.Cut(term, " eq ")
		val = strings.TrimSpace(val)
		if !ok || strings.TrimSpace(prop) != "LogicalName" || len(val) < 2 || val[0] != '\'' || val[len(val)-1] != '\'' {
			return nil, dverr(http.StatusBadRequest, dvBadRequest, "The sandbox supports $filter on EntityDefinitions only as LogicalName eq '...' joined by or.")
		}
		want[strings.ToLower(strings.ReplaceAll(val[1:len(val)-1], "''", "'"))] = true
	}
	return want, nil
}

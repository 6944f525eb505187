package sandbox

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// soqlFixture returns fresh records covering text in mixed case, numbers as
// float64 and as text, booleans, dates, date-times in Salesforce's
// +0000 form, nulls (present and missing) and a pre-joined relationship.
func soqlFixture() []Record {
	return []Record{
		{
			"Id": "003A", "LastName": "Doe", "FirstName": "John", "MRN__c": "MRN-001",
			"Age__c": 42.0, "Active__c": true, "Score__c": "7.5",
			"SystemModstamp": "2026-01-05T10:31:00.000+0000", "Birthdate": "1980-02-29",
			"Patient": map[string]any{
				"attributes": map[string]any{"type": "Patient__c", "url": "/services/data/v59.0/sobjects/Patient__c/a01A"},
				"Id":         "a01A", "Name": "Pat One",
			},
		},
		{
			"Id": "003B", "LastName": "doe", "FirstName": nil, "MRN__c": "MRN-002",
			"Age__c": 17.0, "Active__c": false, "Score__c": "10",
			"SystemModstamp": "2026-01-05T10:29:59.000+0000", "Birthdate": "2008-06-01",
		},
		{
			"Id": "003C", "LastName": "O'Brien", "MRN__c": "MRN_3%",
			"Age__c": nil, "SystemModstamp": "2026-01-05T09:30:00.000+0000", "Birthdate": nil,
		},
		{
			"Id": "003D", "LastName": "Smith", "FirstName": "Ann", "MRN__c": "mrn-004",
			"Age__c": 65.0, "Active__c": true,
			"SystemModstamp": "2026-01-06T00:00:00.000+0000", "Birthdate": "1959-12-31",
			"Patient": nil,
		},
	}
}

func soqlIDs(rs []Record) []string {
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		id, _ := r.Get("Id")
		s, _ := id.(string)
		ids = append(ids, strings.TrimPrefix(s, "003"))
	}
	return ids
}

func mustParseSOQL(t *testing.T, q string) *Query {
	t.Helper()
	query, err := ParseSOQL(q)
	if err != nil {
		t.Fatalf("ParseSOQL(%q): %v", q, err)
	}
	return query
}

func TestRecordGetIsCaseInsensitive(t *testing.T) {
	r := Record{"LastName": "Doe", "MRN__c": nil}
	if v, ok := r.Get("lastname"); !ok || v != "Doe" {
		t.Errorf("Get(lastname) = %v, %v", v, ok)
	}
	if v, ok := r.Get("mrn__C"); !ok || v != nil {
		t.Errorf("Get(mrn__C) = %v, %v; want present nil", v, ok)
	}
	if _, ok := r.Get("FirstName"); ok {
		t.Error("Get(FirstName) found a missing field")
	}
	// An exact match wins over a case-insensitive one.
	r = Record{"name": "lower", "Name": "exact"}
	if v, _ := r.Get("Name"); v != "exact" {
		t.Errorf("Get(Name) = %v, want exact", v)
	}
}

func TestParseSOQLAccepts(t *testing.T) {
	tests := []struct {
		q              string
		object         string
		fields         []string
		limit, offset  int
		hasLimit, wErr bool
	}{
		{q: "SELECT Id FROM Contact", object: "Contact", fields: []string{"Id"}},
		{
			q:      "select id, lastname from contact where mrn__c = 'x' order by lastname desc nulls last, id limit 10 offset 5",
			object: "contact", fields: []string{"id", "lastname"}, limit: 10, offset: 5, hasLimit: true,
		},
		{q: "SELECT Id FROM Order ORDER BY Id", object: "Order", fields: []string{"Id"}},
		{q: "SELECT Id, Patient.Name, Patient.Owner.Id FROM Contact", object: "Contact", fields: []string{"Id", "Patient.Name", "Patient.Owner.Id"}},
		{q: "SELECT Id FROM Contact LIMIT 0", object: "Contact", fields: []string{"Id"}, hasLimit: true},
		{q: "SELECT Id FROM Contact OFFSET 2000", object: "Contact", fields: []string{"Id"}, offset: 2000},
		{q: "\n\tSELECT Id\r\n  FROM Contact\n WHERE  SystemModstamp > 2026-01-05T10:30:00Z\n", object: "Contact", fields: []string{"Id"}},
		{q: "SELECT Id FROM Contact WHERE SystemModstamp > 2026-01-05T10:30:00.000+0000", object: "Contact", fields: []string{"Id"}},
		{q: "SELECT Id FROM Contact WHERE SystemModstamp > 2026-01-05T10:30:00+01:00", object: "Contact", fields: []string{"Id"}},
		{q: "SELECT Id FROM Contact WHERE SystemModstamp > 2026-01-05T10:30:00-05:00 AND Birthdate < 2000-01-01", object: "Contact", fields: []string{"Id"}},
		{q: "SELECT Id FROM Contact WHERE Amount__c > -1.5 AND Amount__c < .5 AND Amount__c != +3", object: "Contact", fields: []string{"Id"}},
		{q: "SELECT Id FROM Contact WHERE NOT (Name = 'a' OR Name = 'b') AND Id IN ('1') AND Id NOT IN ('2', null)", object: "Contact", fields: []string{"Id"}},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			q := mustParseSOQL(t, tt.q)
			if q.Object != tt.object || !slices.Equal(q.Fields, tt.fields) || q.Limit != tt.limit || q.Offset != tt.offset || q.hasLimit != tt.hasLimit {
				t.Errorf("got Object=%q Fields=%q Limit=%d (set %v) Offset=%d; want %q %q %d (set %v) %d",
					q.Object, q.Fields, q.Limit, q.hasLimit, q.Offset, tt.object, tt.fields, tt.limit, tt.hasLimit, tt.offset)
			}
		})
	}
}

func TestParseSOQLErrors(t *testing.T) {
	const from = "SELECT Id FROM Contact "
	tests := []struct {
		q      string
		code   string // MALFORMED_QUERY when empty
		detail string // the message's last line
		at     string // "Row:r:Column:c" when checked
	}{
		{q: "", detail: "unexpected token: '<EOF>'", at: "Row:1:Column:1"},
		{q: "SELECT Id FORM Contact", detail: "unexpected token: 'FORM'", at: "Row:1:Column:11"},
		{q: "DELETE FROM Contact", detail: "unexpected token: 'DELETE'", at: "Row:1:Column:1"},
		{q: "SELECT FROM Contact", detail: "unexpected token: 'FROM'", at: "Row:1:Column:8"},
		{q: "SELECT Id, FROM Contact", detail: "unexpected token: 'FROM'"},
		{q: "SELECT Id FROM", detail: "unexpected token: '<EOF>'", at: "Row:1:Column:15"},
		{q: "SELECT * FROM Contact", detail: "unexpected token: '*'"},
		{q: "SELECT Id FROM Contact c", detail: "unexpected token: 'c'"},
		{q: "SELECT Id FROM Contact, Account", detail: "unexpected token: ','"},
		{q: "SELECT Id FROM Contact.Account", detail: "unexpected token: 'Contact.Account'"},
		{q: "SELECT Id FROM Contact WHERE", detail: "unexpected token: '<EOF>'"},
		{q: "SELECT COUNT(Id) FROM Contact", detail: "COUNT(fieldName) is not supported by the ehrbridge sandbox"},
		{q: "SELECT Name, COUNT() FROM Contact", detail: "the function COUNT() is not supported by the ehrbridge sandbox"},
		{q: "SELECT FIELDS(ALL) FROM Contact LIMIT 200", detail: "the function FIELDS() is not supported by the ehrbridge sandbox"},
		{q: "SELECT Id, (SELECT Id FROM Contacts) FROM Account", detail: "a subquery in the SELECT list is not supported by the ehrbridge sandbox", at: "Row:1:Column:12"},
		{q: "SELECT TYPEOF What WHEN Account THEN Name END FROM Event", detail: "TYPEOF is not supported by the ehrbridge sandbox"},
		{q: from + "WHERE Id IN (SELECT ContactId FROM Case)", detail: "a semi-join or anti-join subquery (IN (SELECT ...)) is not supported by the ehrbridge sandbox"},
		{q: from + "WHERE Id NOT IN (SELECT ContactId FROM Case)", detail: "a semi-join or anti-join subquery (IN (SELECT ...)) is not supported by the ehrbridge sandbox"},
		{q: "SELECT LeadSource FROM Lead GROUP BY LeadSource", detail: "GROUP BY is not supported by the ehrbridge sandbox"},
		{q: from + "WITH SECURITY_ENFORCED", detail: "WITH clauses is not supported by the ehrbridge sandbox"},
		{q: from + "USING SCOPE Mine", detail: "USING SCOPE is not supported by the ehrbridge sandbox"},
		{q: from + "LIMIT 1 FOR UPDATE", detail: "FOR VIEW / FOR REFERENCE / FOR UPDATE is not supported by the ehrbridge sandbox"},
		{q: from + "WHERE CALENDAR_YEAR(CreatedDate) = 2026", detail: "the function CALENDAR_YEAR() is not supported by the ehrbridge sandbox"},
		{q: from + "WHERE Tags__c INCLUDES ('a')", detail: "INCLUDES (multi-select picklists) is not supported by the ehrbridge sandbox"},
		{q: from + "WHERE CreatedDate = TODAY", detail: "the date literal TODAY (write an explicit date or date-time) is not supported by the ehrbridge sandbox"},
		{q: from + "WHERE CreatedDate = LAST_N_DAYS:7", detail: "the date literal LAST_N_DAYS (write an explicit date or date-time) is not supported by the ehrbridge sandbox"},
		// Salesforce requires parentheses whenever AND and OR are mixed.
		{q: from + "WHERE A = 1 AND B = 2 OR C = 3", detail: "unexpected token: 'OR' (AND and OR mixed without parentheses)", at: "Row:1:Column:46"},
		{q: from + "WHERE A = 1 OR B = 2 AND C = 3", detail: "unexpected token: 'AND' (AND and OR mixed without parentheses)"},
		// SOQL negates LIKE as NOT Name LIKE ..., never Name NOT LIKE.
		{q: from + "WHERE Name NOT LIKE 'x%'", detail: "unexpected token: 'LIKE'"},
		{q: from + "WHERE Name = 'abc", detail: "unterminated string literal", at: "Row:1:Column:37"},
		{q: from + `WHERE Name = 'a\qb'`, detail: `invalid escape sequence '\q' in string literal`},
		{q: from + `WHERE Name = 'a\`, detail: "unterminated string literal"},
		{q: from + "WHERE CreatedDate > 2026-13-01", detail: "invalid date literal: 2026-13-01"},
		{q: from + "WHERE CreatedDate > 2026-01-05T10:30:00", detail: "invalid date-time literal: 2026-01-05T10:30:00"},
		{q: from + "WHERE CreatedDate > 2026-01-05T25:30:00Z", detail: "invalid date-time literal: 2026-01-05T25:30:00Z"},
		{q: from + "WHERE Name = :name", detail: "unexpected token: ':'"},
		{q: from + "WHERE Name = OtherField", detail: "unexpected token: 'OtherField'"},
		{q: from + "WHERE Age__c > null", detail: "null can only be compared with = or !=, not >"},
		{q: from + "WHERE Name LIKE 5", detail: "unexpected token: '5'"},
		{q: from + "WHERE Name ! 'x'", detail: "unexpected token: '!'"},
		{q: from + "WHERE Name", detail: "unexpected token: '<EOF>'"},
		{q: from + "WHERE Id IN ()", detail: "unexpected token: ')'"},
		{q: from + "WHERE Id IN ('a' 'b')", detail: "unexpected token: 'b'"},
		{q: from + "WHERE Id IN 'a'", detail: "unexpected token: 'a'"},
		{q: from + "WHERE (Name = 'a'", detail: "unexpected token: '<EOF>'"},
		{q: from + "WHERE Name = 'a')", detail: "unexpected token: ')'"},
		{q: from + "WHERE Patient. = 'a'", detail: "unexpected token: 'Patient.'"},
		{q: from + "WHERE NOT = 'a'", detail: "unexpected token: '='"},
		{q: from + "WHERE " + strings.Repeat("(", 200) + "Id = '1'" + strings.Repeat(")", 200), detail: "query is nested too deeply"},
		{q: from + "ORDER Name", detail: "unexpected token: 'Name'"},
		{q: from + "ORDER BY Name NULLS MIDDLE", detail: "unexpected token: 'MIDDLE'"},
		{q: from + "ORDER BY Name WHERE Id = '1'", detail: "unexpected token: 'WHERE'"},
		{q: from + "LIMIT 5 ORDER BY Name", detail: "unexpected token: 'ORDER'"},
		{q: from + "LIMIT", detail: "unexpected token: '<EOF>'"},
		{q: from + "LIMIT -1", detail: "unexpected token: '-1'"},
		{q: from + "LIMIT 1.5", detail: "unexpected token: '1.5'"},
		{q: from + "LIMIT 99999999999999999999", detail: "number out of range: 99999999999999999999"},
		{q: from + "OFFSET 2001", code: "NUMBER_OUTSIDE_VALID_RANGE", detail: "Maximum SOQL offset allowed is 2000"},
		{q: "SELECT Id\nFROM Contact\nWHERE Name = :x", detail: "unexpected token: ':'", at: "Row:3:Column:14"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			q, err := ParseSOQL(tt.q)
			if err == nil {
				t.Fatalf("ParseSOQL succeeded: %+v", q)
			}
			var se *SOQLError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want *SOQLError", err, err)
			}
			code := tt.code
			if code == "" {
				code = "MALFORMED_QUERY"
			}
			if se.Code != code {
				t.Errorf("Code = %q, want %q", se.Code, code)
			}
			lines := strings.Split(se.Message, "\n")
			if last := lines[len(lines)-1]; last != tt.detail {
				t.Errorf("detail = %q, want %q\nmessage: %s", last, tt.detail, se.Message)
			}
			if tt.at != "" && !strings.Contains(se.Message, "ERROR at "+tt.at+"\n") {
				t.Errorf("message does not point at %s:\n%s", tt.at, se.Message)
			}
		})
	}
}

// TestParseSOQLErrorLayout pins the whole message: the offending line, a
// caret under the column, the position, the reason (Salesforce's layout).
func TestParseSOQLErrorLayout(t *testing.T) {
	_, err := ParseSOQL("SELECT Id FORM Contact")
	want := "\nSELECT Id FORM Contact\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'"
	var se *SOQLError
	if !errors.As(err, &se) || se.Message != want {
		t.Fatalf("got %#v\nwant message %q", err, want)
	}
	if got := se.Error(); got != "MALFORMED_QUERY: "+want {
		t.Errorf("Error() = %q", got)
	}

	// The caret line copies tabs so it still lines up in a terminal.
	_, err = ParseSOQL("SELECT Id\n\tFROM Contact\n\tWHERE Id = %")
	errors.As(err, &se)
	if !strings.HasPrefix(se.Message, "\n\tWHERE Id = %\n\t           ^\nERROR at Row:3:Column:13\n") {
		t.Errorf("multi-line message:\n%q", se.Message)
	}
}

func TestSOQLMatch(t *testing.T) {
	tests := []struct {
		where string
		want  []string
	}{
		{"", []string{"A", "B", "C", "D"}},
		// Text equality is case-insensitive, field names too.
		{"LastName = 'DOE'", []string{"A", "B"}},
		{"lastname = 'doe'", []string{"A", "B"}},
		{"LastName != 'doe'", []string{"C", "D"}},
		{"LastName <> 'doe'", []string{"C", "D"}},
		{`LastName = 'O\'Brien'`, []string{"C"}},
		{"LastName > 'm'", []string{"C", "D"}},
		{"LastName <= 'DOE'", []string{"A", "B"}},
		// Numbers, from float64 and from numeric text; a null never compares.
		{"Age__c = 42", []string{"A"}},
		{"Age__c = 42.0", []string{"A"}},
		{"Age__c != 42", []string{"B", "D"}},
		{"Age__c > 17", []string{"A", "D"}},
		{"Age__c >= 17", []string{"A", "B", "D"}},
		{"Age__c < 42", []string{"B"}},
		{"Age__c <= 42", []string{"A", "B"}},
		{"Age__c > -1", []string{"A", "B", "D"}},
		{"Score__c > 8", []string{"B"}},
		{"Score__c = 7.5", []string{"A"}},
		{"LastName > 5", nil},
		// Booleans; a missing field is null, not false.
		{"Active__c = true", []string{"A", "D"}},
		{"Active__c = FALSE", []string{"B"}},
		{"Active__c != true", []string{"B"}},
		// Nulls: present-but-nil and missing are the same.
		{"FirstName = null", []string{"B", "C"}},
		{"FirstName != NULL", []string{"A", "D"}},
		{"FirstName <> null", []string{"A", "D"}},
		{"Active__c = null", []string{"C"}},
		{"Nonexistent__c = null", []string{"A", "B", "C", "D"}},
		{"FirstName != 'John'", []string{"D"}},
		// Date-times compare as instants whatever the offset notation.
		{"SystemModstamp > 2026-01-05T10:30:00Z", []string{"A", "D"}},
		{"SystemModstamp < 2026-01-05T10:30:00.000+0000", []string{"B", "C"}},
		{"SystemModstamp = 2026-01-05T10:30:00+01:00", []string{"C"}},
		{"SystemModstamp = 2026-01-05T09:30:00.000Z", []string{"C"}},
		{"SystemModstamp >= 2026-01-05T05:31:00-05:00", []string{"A", "D"}},
		{"SystemModstamp > 2026-01-05T10:30:00.000+0100", []string{"A", "B", "D"}},
		// A date-time against a date compares its UTC day.
		{"SystemModstamp = 2026-01-05", []string{"A", "B", "C"}},
		{"SystemModstamp > 2026-01-05", []string{"D"}},
		{"Birthdate < 1990-01-01", []string{"A", "D"}},
		{"Birthdate = 1980-02-29", []string{"A"}},
		{"Birthdate != 1980-02-29", []string{"B", "D"}},
		{"Birthdate >= 2008-06-01T00:00:00Z", []string{"B"}},
		{"LastName > 2026-01-01", nil},
		// IN / NOT IN; null matches only when listed, and a null field
		// never satisfies NOT IN.
		{"MRN__c IN ('mrn-001', 'MRN-004')", []string{"A", "D"}},
		{"MRN__c NOT IN ('MRN-001')", []string{"B", "C", "D"}},
		{"FirstName IN ('john', null)", []string{"A", "B", "C"}},
		{"FirstName NOT IN ('John')", []string{"D"}},
		{"FirstName NOT IN ('John', null)", []string{"D"}},
		{"Age__c IN (17, 65)", []string{"B", "D"}},
		{"Age__c NOT IN (17)", []string{"A", "D"}},
		{"Birthdate IN (1980-02-29, 1959-12-31)", []string{"A", "D"}},
		// LIKE: % and _ wildcards, case-insensitive, \% and \_ literal.
		{"LastName LIKE 'd%'", []string{"A", "B"}},
		{"LastName LIKE 'D_E'", []string{"A", "B"}},
		{"LastName LIKE '%i%'", []string{"C", "D"}},
		{`LastName LIKE '%\'%'`, []string{"C"}},
		{"LastName LIKE 'doe'", []string{"A", "B"}},
		{"LastName LIKE 'do'", nil},
		{"LastName LIKE '%'", []string{"A", "B", "C", "D"}},
		{"MRN__c LIKE 'MRN_%'", []string{"A", "B", "C", "D"}},
		{`MRN__c LIKE 'MRN\_%'`, []string{"C"}},
		{`MRN__c LIKE '%\%'`, []string{"C"}},
		{"MRN__c LIKE '%0_'", []string{"A", "B", "D"}},
		{"FirstName LIKE '%'", []string{"A", "D"}},
		{"Age__c LIKE '4%'", nil},
		{"NOT LastName LIKE 'd%'", []string{"C", "D"}},
		// Relationship paths resolve through pre-joined objects.
		{"Patient.Name = 'pat one'", []string{"A"}},
		{"patient.name LIKE 'Pat%'", []string{"A"}},
		{"Patient.Name = null", []string{"B", "C", "D"}},
		{"Patient.Name != null", []string{"A"}},
		{"LastName.Name = null", []string{"A", "B", "C", "D"}},
		// Logic: AND, OR, NOT and explicit grouping.
		{"LastName = 'Doe' AND Age__c > 20", []string{"A"}},
		{"LastName = 'Smith' OR Age__c < 20 OR FirstName = null", []string{"B", "C", "D"}},
		{"LastName = 'doe' AND Age__c > 10 AND Active__c = false", []string{"B"}},
		{"(LastName = 'Smith' OR Age__c < 20) AND Active__c = true", []string{"D"}},
		{"LastName = 'Smith' OR (Age__c < 20 AND Active__c = true)", []string{"D"}},
		{"(LastName = 'doe' AND Active__c = false) OR Age__c > 60", []string{"B", "D"}},
		{"LastName = 'doe' AND (Active__c = false OR Age__c > 40)", []string{"A", "B"}},
		{"NOT (LastName = 'doe')", []string{"C", "D"}},
		{"NOT LastName = 'doe' AND Age__c > 60", []string{"D"}},
		{"NOT NOT LastName = 'doe'", []string{"A", "B"}},
		{"NOT (LastName = 'doe' OR Age__c > 60)", []string{"C"}},
		{"((((Id = '003C'))))", []string{"C"}},
	}
	for _, tt := range tests {
		t.Run(tt.where, func(t *testing.T) {
			q := "SELECT Id FROM Contact"
			if tt.where != "" {
				q += " WHERE " + tt.where
			}
			query := mustParseSOQL(t, q)
			var got []Record
			for _, r := range soqlFixture() {
				if query.Match(r) {
					got = append(got, r)
				}
			}
			if ids := soqlIDs(got); !slices.Equal(ids, tt.want) {
				t.Errorf("matched %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestSOQLSort(t *testing.T) {
	tests := []struct {
		orderBy string
		want    []string
	}{
		{"", []string{"A", "B", "C", "D"}},
		// Nulls come first by default in either direction.
		{"Age__c", []string{"C", "B", "A", "D"}},
		{"Age__c ASC", []string{"C", "B", "A", "D"}},
		{"Age__c DESC", []string{"C", "D", "A", "B"}},
		{"Age__c DESC NULLS LAST", []string{"D", "A", "B", "C"}},
		{"Age__c asc nulls last", []string{"B", "A", "D", "C"}},
		{"Age__c NULLS FIRST", []string{"C", "B", "A", "D"}},
		// Text sorts case-insensitively; ties fall to the next key.
		{"LastName, Id", []string{"A", "B", "C", "D"}},
		{"LastName, Id DESC", []string{"B", "A", "C", "D"}},
		{"LastName DESC, Id DESC", []string{"D", "C", "B", "A"}},
		// Numeric text sorts as numbers: 7.5 before 10.
		{"Score__c", []string{"C", "D", "A", "B"}},
		{"SystemModstamp", []string{"C", "B", "A", "D"}},
		{"SystemModstamp DESC", []string{"D", "A", "B", "C"}},
		{"Birthdate DESC", []string{"C", "B", "A", "D"}},
		{"Active__c", []string{"C", "B", "A", "D"}},
		{"Active__c DESC NULLS LAST, Id", []string{"A", "D", "B", "C"}},
		{"Patient.Name NULLS LAST", []string{"A", "B", "C", "D"}},
		{"Patient.Name", []string{"B", "C", "D", "A"}},
	}
	for _, tt := range tests {
		t.Run(tt.orderBy, func(t *testing.T) {
			q := "SELECT Id FROM Contact"
			if tt.orderBy != "" {
				q += " ORDER BY " + tt.orderBy
			}
			rs := soqlFixture()
			mustParseSOQL(t, q).Sort(rs)
			if ids := soqlIDs(rs); !slices.Equal(ids, tt.want) {
				t.Errorf("order %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestSOQLApplyLimitOffset(t *testing.T) {
	tests := []struct {
		q    string
		want []string
	}{
		{"SELECT Id FROM Contact ORDER BY Id DESC", []string{"D", "C", "B", "A"}},
		{"SELECT Id FROM Contact ORDER BY Id LIMIT 2", []string{"A", "B"}},
		{"SELECT Id FROM Contact ORDER BY Id LIMIT 2 OFFSET 1", []string{"B", "C"}},
		{"SELECT Id FROM Contact ORDER BY Id OFFSET 3", []string{"D"}},
		{"SELECT Id FROM Contact OFFSET 4", []string{}},
		{"SELECT Id FROM Contact LIMIT 0", []string{}},
		{"SELECT Id FROM Contact LIMIT 100", []string{"A", "B", "C", "D"}},
		{"SELECT Id FROM Contact WHERE LastName = 'doe' ORDER BY Age__c LIMIT 1", []string{"B"}},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			in := soqlFixture()
			before := soqlIDs(in)
			got := soqlIDs(mustParseSOQL(t, tt.q).Apply(in))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Apply = %v, want %v", got, tt.want)
			}
			if after := soqlIDs(in); !slices.Equal(before, after) {
				t.Errorf("Apply reordered its input: %v", after)
			}
		})
	}
}

func soqlJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSOQLProject(t *testing.T) {
	q := mustParseSOQL(t, "SELECT id, lastname, Patient.Name, patient.Id, Patient.Owner.Name, Missing__c, FirstName FROM Contact")
	rs := soqlFixture()
	const prefix = "/services/data/v59.0"
	tests := []struct {
		rec  Record
		want string
	}{
		{rs[0], `{"FirstName":"John","Id":"003A","LastName":"Doe","Missing__c":null,` +
			`"Patient":{"Id":"a01A","Name":"Pat One","Owner":null,"attributes":{"type":"Patient__c","url":"/services/data/v59.0/sobjects/Patient__c/a01A"}},` +
			`"attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003A"}}`},
		// A null or missing relationship comes back as null, not as an object.
		{rs[1], `{"FirstName":null,"Id":"003B","LastName":"doe","Missing__c":null,"Patient":null,` +
			`"attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003B"}}`},
		{rs[3], `{"FirstName":"Ann","Id":"003D","LastName":"Smith","Missing__c":null,"Patient":null,` +
			`"attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003D"}}`},
		// Without an Id the url stops at the object.
		{Record{"LastName": "X"}, `{"FirstName":null,"LastName":"X","Missing__c":null,"Patient":null,"id":null,` +
			`"attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact"}}`},
	}
	for i, tt := range tests {
		got := soqlJSON(t, q.Project(tt.rec, prefix))
		// encoding/json sorts keys; rebuild want through it too.
		var w any
		if err := json.Unmarshal([]byte(tt.want), &w); err != nil {
			t.Fatal(err)
		}
		if want := soqlJSON(t, w); got != want {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// Projection copies: changing the result leaves the record alone.
	out := q.Project(rs[0], prefix)
	out["LastName"] = "changed"
	out["Patient"].(map[string]any)["Name"] = "changed"
	if rs[0]["LastName"] != "Doe" || rs[0]["Patient"].(map[string]any)["Name"] != "Pat One" {
		t.Error("Project aliased the source record")
	}
}

// TestSOQLJsforceQueries runs the exact requests jsforce 3.6.6 (node 20)
// sent, as captured in /work/shared/captures/jsforce-3.6.6-node20.jsonl
// (jsforce 3.10.26 sends the same two).
func TestSOQLJsforceQueries(t *testing.T) {
	records := []Record{
		{"Id": "003000000000001AAA", "LastName": "Doe", "FirstName": "John", "MRN__c": "MRN-001", "SystemModstamp": "2026-01-05T10:31:00.000+0000"},
		{"Id": "003000000000002AAA", "LastName": "Roe", "MRN__c": "MRN-002"},
		{"Id": "003000000000003AAA", "LastName": "Poe", "MRN__c": nil},
	}
	tests := []struct {
		url  string
		want string
	}{
		{
			"/services/data/v59.0/query?q=SELECT%20Id%2C%20LastName%20FROM%20Contact%20WHERE%20MRN__c%20%3D%20%27MRN-001%27",
			`[{"Id":"003000000000001AAA","LastName":"Doe","attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003000000000001AAA"}}]`,
		},
		{
			"/services/data/v59.0/query?q=SELECT%20Id%20FROM%20Contact",
			`[{"Id":"003000000000001AAA","attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003000000000001AAA"}},` +
				`{"Id":"003000000000002AAA","attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003000000000002AAA"}},` +
				`{"Id":"003000000000003AAA","attributes":{"type":"Contact","url":"/services/data/v59.0/sobjects/Contact/003000000000003AAA"}}]`,
		},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		q := mustParseSOQL(t, u.Query().Get("q"))
		var page []Record
		for _, r := range q.Apply(records) {
			page = append(page, q.Project(r, "/services/data/v59.0"))
		}
		if got := soqlJSON(t, page); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", u.Query().Get("q"), got, tt.want)
		}
	}
}

// TestSOQLPollQuery is the shape of the outbound poll (DESIGN.md: notes
// changed since a watermark on SystemModstamp), against values written the
// way the sandbox store stamps them.
func TestSOQLPollQuery(t *testing.T) {
	q := mustParseSOQL(t, "SELECT Id, Body__c, SystemModstamp FROM Note__c "+
		"WHERE Send_To_EHR__c = true AND SystemModstamp > 2026-01-05T10:30:00.000+0000 "+
		"ORDER BY SystemModstamp ASC, Id ASC LIMIT 200")
	rs := []Record{
		{"Id": "a02C", "Send_To_EHR__c": true, "SystemModstamp": "2026-01-05T10:30:00.001+0000"},
		{"Id": "a02A", "Send_To_EHR__c": true, "SystemModstamp": "2026-01-05T10:30:00.000+0000"},
		{"Id": "a02B", "Send_To_EHR__c": true, "SystemModstamp": "2026-01-05T10:29:00.000+0000"},
		{"Id": "a02D", "Send_To_EHR__c": false, "SystemModstamp": "2026-01-06T00:00:00.000+0000"},
		{"Id": "a02E", "Send_To_EHR__c": true, "SystemModstamp": "2026-01-05T10:30:00.001+0000"},
		{"Id": "a02F", "Send_To_EHR__c": true, "SystemModstamp": "2026-01-05T10:29:59.000+0000"},
	}
	var got []string
	for _, r := range q.Apply(rs) {
		got = append(got, r["Id"].(string))
	}
	if want := []string{"a02C", "a02E"}; !slices.Equal(got, want) {
		t.Errorf("poll returned %v, want %v", got, want)
	}
}

func FuzzParseSOQL(f *testing.F) {
	for _, s := range []string{
		"SELECT Id FROM Contact",
		"SELECT Id, LastName FROM Contact WHERE MRN__c = 'MRN-001'",
		"SELECT Id, Patient.Name FROM Contact WHERE (A = 1 OR B != 'x') AND NOT C LIKE 'a\\_%' ORDER BY Name DESC NULLS LAST, Id LIMIT 5 OFFSET 2",
		"SELECT Id FROM Contact WHERE SystemModstamp > 2026-01-05T10:30:00.000+0000 AND Birthdate <= 2000-01-01",
		"SELECT Id FROM Contact WHERE Id IN ('a', null) AND Age__c NOT IN (1, -2.5)",
		"SELECT Id FROM Contact WHERE Name = 'O\\'Brien\\n\\\\'",
		"SELECT Id FORM Contact",
		"SELECT COUNT() FROM Contact GROUP BY Name",
		"SELECT COUNT()FROM A", // found by the fuzzer: a count has no fields
		"SELECT Id FROM Contact WHERE CreatedDate = LAST_N_DAYS:7",
		"SELECT Id\n\tFROM Contact\n\tWHERE Name = :x",
		"SELECT Id FROM Contact WHERE Name LIKE '%é_'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		q, err := ParseSOQL(s)
		if err != nil {
			var se *SOQLError
			if !errors.As(err, &se) || se.Code == "" || se.Message == "" {
				t.Fatalf("ParseSOQL(%q) returned %#v", s, err)
			}
			return
		}
		// SELECT COUNT() names no field: its answer is the count alone.
		if q.Object == "" || len(q.Fields) == 0 && !q.Count {
			t.Fatalf("ParseSOQL(%q) = %+v without object or fields", s, q)
		}
		for _, r := range q.Apply(soqlFixture()) {
			q.Project(r, "/services/data/v59.0")
		}
	})
}

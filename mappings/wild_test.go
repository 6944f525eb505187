package mappings_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/shared"
	"github.com/ehrbridge/ehrbridge/mappings"
)

// The corpus of strangers' messages (hl7/testdata/wild, see its README.md)
// mapped with both shipped sets, as they stand and in variants made from
// them. What must hold for every message:
//   - mapping never panics, and a refusal is a *mappings.Error that quotes
//     no patient name, identifier or birth date;
//   - no op key and no reference key has a blank part: none is empty,
//     whitespace or the HL7 null "", so no "||", no leading or trailing
//     "|" (TestWildKeys);
//   - two messages about different patients (no PID-3 or MRG-1 identifier
//     in common, an identifier being CX.1 with its CX.4 or, lacking one,
//     the sending facility MSH-4) never give the same patient key
//     (TestWildKeys);
//   - a message refused only for a partial birth date (YYYY or YYYYMM, valid
//     HL7 DTM) is a defect: it must map (TestWildKeys, TestWildVariants);
//   - with its patient identifier blank, whitespace, "" or an authority
//     without id, a message writes no patient (TestWildVariants);
//   - the same message from two senders with the same local names but
//     other universal ids (OIDs) in every namespace it sends (MSH-4, CX.4
//     of PID-3, MRG-1 and PV1-19, EI.3-4 of OBR-2, OBR-3, ORC-2, ORC-3,
//     SCH-1, SCH-2) gives no record key in common but code-table ones
//     (TestWildVariants).

// wildSets are the shipped inbound mapping sets.
var wildSets = []string{"healthcloud", "dynamics"}

// patientObjects are the sets' patient records.
var patientObjects = map[string]bool{"Account": true, "contact": true}

// sharedObjects are code-table records (Health Cloud codes), rightly the
// same for every sender.
var sharedObjects = map[string]bool{"CodeSet": true, "CodeSetBundle": true}

type wildMessage struct {
	name string // file #n
	raw  []byte
	msg  *hl7.Message
}

func wildMessages(t *testing.T) []wildMessage {
	t.Helper()
	files := shared.WildFiles(t)
	names := shared.WildNames(files)
	var out []wildMessage
	for _, n := range names {
		for i, raw := range shared.SplitMessages(files[n]) {
			m, err := hl7.Parse(raw)
			if err != nil {
				continue // the hl7 package's TestWild covers these
			}
			out = append(out, wildMessage{fmt.Sprintf("%s #%d", n, i+1), raw, m})
		}
	}
	if len(out) < 400 {
		t.Fatalf("only %d wild messages parse", len(out))
	}
	return out
}

func loadWildSet(t *testing.T, name string) *mappings.Set {
	t.Helper()
	dir := filepath.Join(shared.ModuleRoot(t), "configs", "mappings", name)
	set, err := mappings.Load([]string{dir}, mappings.Options{Zone: time.UTC})
	if err != nil {
		t.Fatalf("%s does not lint:\n%v", name, err)
	}
	return set
}

// mapWild maps m, turning a panic into an error.
func mapWild(set *mappings.Set, m *hl7.Message) (res mappings.Result, err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("panic: %v", r), true
		}
	}()
	res, err = set.Map(mappings.Input{HL7: m})
	return res, err, false
}

// reparse parses raw again and applies edit, for a variant of a message.
func reparse(t *testing.T, raw []byte, edit func(m *hl7.Message)) *hl7.Message {
	t.Helper()
	m, err := hl7.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	return m
}

// opKeys returns every key res writes or refers to, with its object.
func opKeys(res mappings.Result) (keys []objectKey) {
	for _, op := range res.Ops {
		keys = append(keys, objectKey{op.Object, op.Key, false})
		for _, f := range op.Fields {
			if f.Value.Kind == mappings.Ref && f.Value.Ref != nil {
				keys = append(keys, objectKey{f.Value.Ref.Object, f.Value.Ref.Key, true})
			}
		}
	}
	return keys
}

type objectKey struct {
	object, key string
	ref         bool
}

// blankPart returns the 1-based number of the first blank part of key
// (parts joined by "|"), or 0.
func blankPart(key string) int {
	for i, p := range strings.Split(key, "|") {
		if p = strings.TrimSpace(p); p == "" || p == `""` {
			return i + 1
		}
	}
	return 0
}

// normHD renders a hierarchic designator (or CX.4, EI.2-4) as sent:
// parts trimmed, trailing empty parts dropped.
func normHD(parts []string) string {
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, "^")
}

func valueAt(m *hl7.Message, p hl7.Path) string { return m.Get(p).String() }

// identities returns the patient identifiers a message carries in PID-3
// and MRG-1: CX.1 with its assigning authority (CX.4), or with the sending
// facility (MSH-4) when it has none. A blank or "" CX.1 is no identifier.
func identities(m *hl7.Message) map[string]bool {
	facility := normHD([]string{
		valueAt(m, hl7.Path{Segment: "MSH", Field: 4, Component: 1}),
		valueAt(m, hl7.Path{Segment: "MSH", Field: 4, Component: 2}),
		valueAt(m, hl7.Path{Segment: "MSH", Field: 4, Component: 3}),
	})
	ids := map[string]bool{}
	for _, seg := range []struct {
		id    string
		field int
	}{{"PID", 3}, {"MRG", 1}} {
		for occ := 1; occ <= m.Count(seg.id); occ++ {
			for rep := 1; rep <= 30; rep++ {
				p := hl7.Path{Segment: seg.id, SegmentRep: occ, Field: seg.field, Rep: rep}
				id := strings.TrimSpace(valueAt(m, hl7.Path{Segment: p.Segment, SegmentRep: occ, Field: p.Field, Rep: rep, Component: 1}))
				if id == "" || id == `""` {
					continue
				}
				ns := normHD([]string{
					valueAt(m, hl7.Path{Segment: seg.id, SegmentRep: occ, Field: seg.field, Rep: rep, Component: 4, Subcomponent: 1}),
					valueAt(m, hl7.Path{Segment: seg.id, SegmentRep: occ, Field: seg.field, Rep: rep, Component: 4, Subcomponent: 2}),
					valueAt(m, hl7.Path{Segment: seg.id, SegmentRep: occ, Field: seg.field, Rep: rep, Component: 4, Subcomponent: 3}),
				})
				if ns == "" {
					ns = "facility " + facility
				}
				ids[id+" from "+ns] = true
			}
		}
	}
	return ids
}

func overlap(a, b map[string]bool) bool {
	for k := range a {
		if b[k] {
			return true
		}
	}
	return false
}

// refusalLeaks reports whether text quotes a value of m that a refusal must
// not quote: PID-3.1, PID-5.1.1 or PID-7.1 of 4 or more characters.
func refusalLeaks(m *hl7.Message, text string) bool {
	for _, p := range []string{"PID-3.1", "PID-5.1.1", "PID-7.1"} {
		if v, _ := m.GetString(p); len(strings.TrimSpace(v)) >= 4 && strings.Contains(text, strings.TrimSpace(v)) {
			return true
		}
	}
	return false
}

var partialDate = regexp.MustCompile(`^(\d{4}|\d{6})([+-]\d{4})?$`)

// fullBirthDate gives m's partial PID-7.1 a day (YYYY -> YYYY0701,
// YYYYMM -> YYYYMM15), keeping an offset.
func fullBirthDate(m *hl7.Message) {
	v, _ := m.GetString("PID-7.1")
	sm := partialDate.FindStringSubmatch(v)
	if sm == nil {
		return
	}
	d := sm[1] + "0701"
	if len(sm[1]) == 6 {
		d = sm[1] + "15"
	}
	_ = m.Set(hl7.MustPath("PID-7.1"), d+sm[2])
}

// TestWildKeys maps every wild message as it is with both sets.
func TestWildKeys(t *testing.T) {
	msgs := wildMessages(t)
	for _, setName := range wildSets {
		t.Run(setName, func(t *testing.T) {
			set := loadWildSet(t, setName)
			type owner struct {
				name string
				ids  map[string]bool
			}
			patients := map[string]owner{}
			var f shared.Findings
			var mapped, refused int
			for _, wm := range msgs {
				res, err, panicked := mapWild(set, wm.msg)
				if panicked {
					f.Add("mapping panics", wm.name)
					continue
				}
				if err != nil {
					refused++
					var me *mappings.Error
					if !errors.As(err, &me) {
						f.Add(fmt.Sprintf("refused with an error of type %T, not *mappings.Error", err), wm.name)
					}
					if refusalLeaks(wm.msg, err.Error()) {
						f.Add("the refusal quotes patient data", wm.name)
					}
					if v, _ := wm.msg.GetString("PID-7.1"); partialDate.MatchString(v) {
						full := reparse(t, wm.raw, fullBirthDate)
						if _, err2, _ := mapWild(set, full); err2 == nil {
							f.Add("refused only for its partial birth date (YYYY or YYYYMM)", wm.name)
						}
					}
					continue
				}
				if len(res.Ops) > 0 {
					mapped++
				}
				ids := identities(wm.msg)
				for _, k := range opKeys(res) {
					if n := blankPart(k.key); n > 0 {
						f.Add(fmt.Sprintf("%s %s has a blank part", k.object, keyKind(k.ref)), wm.name)
					}
					if !patientObjects[k.object] {
						continue
					}
					o, seen := patients[k.key]
					if seen && o.name == wm.name {
						continue // a message's patient op and its references to it
					}
					if !seen {
						patients[k.key] = owner{wm.name, ids}
						continue
					}
					if !overlap(o.ids, ids) {
						f.Add(fmt.Sprintf("patients with no identifier in common share one %s key (first: %s)", k.object, o.name), wm.name)
					}
				}
			}
			f.Report(t)
			t.Logf("%s: %d wild messages, %d mapped to ops, %d refused, %d patient keys", setName, len(msgs), mapped, refused, len(patients))
			if mapped < 100 {
				t.Errorf("only %d wild messages mapped to ops", mapped)
			}
		})
	}
}

// TestWildVariants maps variants of every wild message that maps: with a
// partial birth date, without a patient identifier, and from two senders
// that differ only in their OIDs.
func TestWildVariants(t *testing.T) {
	msgs := wildMessages(t)
	blankIDs := []struct{ name, raw string }{
		{"whitespace", " "}, {`HL7 null ""`, `""`}, {"an authority without id", "^^^WILDAUTH^MR"},
	}
	for _, setName := range wildSets {
		t.Run(setName, func(t *testing.T) {
			set := loadWildSet(t, setName)
			var f shared.Findings
			var dates, blanks, senders int
			for _, wm := range msgs {
				res, err, _ := mapWild(set, wm.msg)
				if err != nil || len(res.Ops) == 0 {
					continue // TestWildKeys reports these
				}
				// Partial birth dates: YYYY and YYYYMM of a full PID-7.
				if v, _ := wm.msg.GetString("PID-7.1"); len(v) >= 8 && strings.Trim(v[:8], "0123456789") == "" {
					for _, n := range []int{4, 6} {
						dates++
						variant := reparse(t, wm.raw, func(m *hl7.Message) { _ = m.Set(hl7.MustPath("PID-7.1"), v[:n]) })
						if _, err, _ := mapWild(set, variant); err != nil {
							f.Add(fmt.Sprintf("refused with a %d-digit birth date (its full PID-7 truncated)", n), wm.name)
						}
					}
				}
				// No patient identifier: nothing written about a patient.
				if wm.msg.Segment("PID", 1) != nil && wm.msg.Segment("MRG", 1) == nil && hasPatient(res) {
					for _, b := range blankIDs {
						blanks++
						variant := withPID3(t, wm.raw, b.raw)
						vres, err, panicked := mapWild(set, variant)
						if panicked {
							f.Add("mapping panics with PID-3 "+b.name, wm.name)
							continue
						}
						if err == nil && hasPatient(vres) {
							f.Add("PID-3 "+b.name+": a patient is written or referred to without an identifier", wm.name)
						}
					}
				}
				// Two senders with the same local names whose universal ids
				// (OIDs) all differ: no record key in common. (A namespace-
				// only authority may be the same as one with an OID, so
				// the message as sent is not one of the two.)
				senders++
				var keys [2]map[objectKey]bool
				for i, oid := range []string{"2.999.1", "2.999.2"} {
					other := reparse(t, wm.raw, func(m *hl7.Message) { otherSender(m, oid) })
					ores, err, panicked := mapWild(set, other)
					if panicked {
						f.Add("mapping panics for another sender", wm.name)
					}
					keys[i] = map[objectKey]bool{}
					if err != nil {
						continue
					}
					for _, k := range opKeys(ores) {
						if !sharedObjects[k.object] {
							keys[i][k] = true
						}
					}
				}
				for k := range keys[1] {
					if keys[0][k] {
						f.Add(fmt.Sprintf("two senders with the same local names and other OIDs share a %s %s", k.object, keyKind(k.ref)), wm.name)
					}
				}
			}
			f.Report(t)
			t.Logf("%s: %d partial-date, %d blank-identifier and %d other-sender variants", setName, dates, blanks, senders)
			if dates < 50 || blanks < 50 || senders < 100 {
				t.Errorf("too few variants: %d %d %d", dates, blanks, senders)
			}
		})
	}
}

// withPID3 returns raw parsed with the whole of the first PID's PID-3, all
// repetitions, replaced by value (written with ^ for the component
// separator).
func withPID3(t *testing.T, raw []byte, value string) *hl7.Message {
	t.Helper()
	fs := string(raw[3])
	comp := string(raw[4])
	segs := strings.Split(string(raw), "\r")
	for i, seg := range segs {
		if !strings.HasPrefix(seg, "PID"+fs) {
			continue
		}
		f := strings.Split(seg, fs)
		for len(f) < 4 {
			f = append(f, "")
		}
		f[3] = strings.ReplaceAll(value, "^", comp)
		segs[i] = strings.Join(f, fs)
		break
	}
	m, err := hl7.Parse([]byte(strings.Join(segs, "\r")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func keyKind(ref bool) string {
	if ref {
		return "reference key"
	}
	return "key"
}

func hasPatient(res mappings.Result) bool {
	for _, k := range opKeys(res) {
		if patientObjects[k.object] {
			return true
		}
	}
	return false
}

// otherSender moves m to a sender with the same local names and the
// universal ids oid.1 (MSH-4), oid.2 (EI.3 of OBR, ORC and SCH ids) and
// oid.3 (CX.4 of PID-3, MRG-1, PV1-19), type ISO, wherever m sends a
// namespace; namespace ids (HD.1, EI.2) and the identifiers themselves
// unchanged. Two authorities that share a local name but not an OID are
// different authorities (HD, HL7 v2.5 2A.2.33: the universal id is the
// globally unique one).
func otherSender(m *hl7.Message, oid string) {
	set := func(p hl7.Path, v string) { _ = m.Set(p, v) }
	set(hl7.Path{Segment: "MSH", Field: 4, Component: 2}, oid+".1")
	set(hl7.Path{Segment: "MSH", Field: 4, Component: 3}, "ISO")
	cx := []struct {
		seg   string
		field int
	}{{"PID", 3}, {"MRG", 1}, {"PV1", 19}}
	for _, c := range cx {
		for occ := 1; occ <= m.Count(c.seg); occ++ {
			for rep := 1; rep <= 30; rep++ {
				p := hl7.Path{Segment: c.seg, SegmentRep: occ, Field: c.field, Rep: rep, Component: 4}
				if !m.Get(p).IsEmpty() {
					p.Subcomponent = 2
					_ = m.Set(p, oid+".3")
					p.Subcomponent = 3
					_ = m.Set(p, "ISO")
				}
			}
		}
	}
	ei := []struct {
		seg   string
		field int
	}{{"OBR", 2}, {"OBR", 3}, {"ORC", 2}, {"ORC", 3}, {"SCH", 1}, {"SCH", 2}}
	for _, e := range ei {
		for occ := 1; occ <= m.Count(e.seg); occ++ {
			base := hl7.Path{Segment: e.seg, SegmentRep: occ, Field: e.field}
			ns := false
			for c := 2; c <= 4; c++ {
				p := base
				p.Component = c
				ns = ns || !m.Get(p).IsEmpty()
			}
			if !ns {
				continue
			}
			for c, v := range map[int]string{3: oid + ".2", 4: "ISO"} {
				p := base
				p.Component = c
				_ = m.Set(p, v)
			}
		}
	}
}

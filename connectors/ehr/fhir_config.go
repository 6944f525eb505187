package ehr

import (
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/ehrbridge/ehrbridge/connectors/fhirhttp"
	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// FHIRSourceConfig is what a FHIR source follows: declared once, with the
// keys of its entry under sources.fhir in the config file (internal/config
// embeds it there, inline, beside the server's address and auth).
type FHIRSourceConfig struct {
	// Name is the source's name, part of every record key.
	Name string `yaml:"name,required"`
	// Types are the resource types to follow, in order (patients first,
	// so that encounters find them); default Patient, Encounter,
	// Observation, Condition, AllergyIntolerance.
	Types []string `yaml:"types"`
	// PageSize is _count; default 100.
	PageSize int `yaml:"page_size"`
	// Overlap re-reads changes this long before the watermark, against
	// clock skew between the server's lastUpdated and commit order;
	// default 60s.
	Overlap configvalue.Duration `yaml:"overlap"`
	// Deletes is the rule for resources the EHR deletes: DeletesIgnore
	// ("ignore", the default) or DeletesApply ("inactivate": the on_delete
	// of the mappings that wrote the resource, mark its CRM record
	// inactive or delete it; polls then also read each type's _history
	// for deletes).
	Deletes string `yaml:"deletes"`
	// BulkMaxLine bounds one NDJSON line of a Bulk Data file (default
	// 16MiB, 64KiB to 1GiB), and BulkMaxFile a file's decompressed size
	// (default 8GiB, 1MiB to 1024GiB). A file over either fails the
	// backfill with an error naming its type and the bound.
	BulkMaxLine configvalue.ByteSize `yaml:"bulk_max_line"`
	BulkMaxFile configvalue.ByteSize `yaml:"bulk_max_file"`
}

// fhirTypeRe is a FHIR resource type name.
var fhirTypeRe = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// Validate fills in the defaults of the settings left out and reports
// those out of range; keys are relative to the source's entry. The name
// is the config's to check (it must be unique among every kind of source).
func (c *FHIRSourceConfig) Validate(r configvalue.Reporter) {
	if len(c.Types) == 0 {
		c.Types = []string{"Patient", "Encounter", "Observation", "Condition", "AllergyIntolerance"}
	}
	for j, typ := range c.Types {
		if !fhirTypeRe.MatchString(typ) {
			k := "types[" + strconv.Itoa(j) + "]"
			r.Add(k, "%s is not a FHIR resource type like Patient", r.Show(k, configvalue.Quote(typ)))
		}
	}
	if c.PageSize == 0 {
		c.PageSize = 100
	} else if c.PageSize < 1 || c.PageSize > 1000 {
		r.Add("page_size", "must be between 1 and 1000")
	}
	if c.Overlap == 0 {
		c.Overlap = configvalue.Duration(time.Minute)
	} else if c.Overlap < 0 || c.Overlap > configvalue.Duration(24*time.Hour) {
		r.Add("overlap", "must be between 0s and 24h")
	}
	if c.Deletes == "" {
		c.Deletes = DeletesIgnore
	}
	if c.BulkMaxLine == 0 {
		c.BulkMaxLine = DefaultBulkMaxLine
	} else if c.BulkMaxLine < 64*configvalue.KiB || c.BulkMaxLine > configvalue.GiB {
		r.Add("bulk_max_line", "must be between 64KiB and 1GiB, got %s", r.Show("bulk_max_line", c.BulkMaxLine.String()))
	}
	if c.BulkMaxFile == 0 {
		c.BulkMaxFile = DefaultBulkMaxFile
	} else if c.BulkMaxFile < configvalue.MiB || c.BulkMaxFile > 1024*configvalue.GiB {
		r.Add("bulk_max_file", "must be between 1MiB and 1024GiB, got %s", r.Show("bulk_max_file", c.BulkMaxFile.String()))
	}
	if c.Deletes != DeletesIgnore && c.Deletes != DeletesApply {
		r.Add("deletes", `must be "ignore" or "inactivate", got %s`, r.Show("deletes", configvalue.Quote(c.Deletes)))
	}
}

// FHIRTargetConfig is the EHR's FHIR R4 server that write-back files
// DocumentReferences on: declared once, with the keys of the config
// file's writeback.target.fhir section (internal/config embeds it there,
// inline).
type FHIRTargetConfig struct {
	// BaseURL is the server's base, like https://ehr.example/fhir/R4.
	BaseURL string `yaml:"base_url,required"`
	// AuthConfig: a static bearer token (token_env / token_file), or SMART
	// Backend Services (smart_token_url, smart_client_id, smart_key_file).
	fhirhttp.AuthConfig `yaml:",inline"`
	// DocSystem is our DocumentReference identifier system; default
	// urn:ehrbridge:note. TypeCode is the LOINC document type; default
	// 34746-8.
	DocSystem string `yaml:"doc_system"`
	TypeCode  string `yaml:"type_code"`
}

// Validate reports a base URL that is not one and the auth settings'
// problems; keys are relative to the section.
func (c FHIRTargetConfig) Validate(r configvalue.Reporter) {
	if u, err := url.Parse(c.BaseURL); c.BaseURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		r.Add("base_url", "must be an https URL, got %s", r.Show("base_url", configvalue.Quote(c.BaseURL)))
	}
	c.AuthConfig.Validate(r)
}

// NewFHIRTarget is the write-back target for the FHIR server cfg names,
// its token source built (a SMART key or a token that cannot be read fails
// here, at start).
func NewFHIRTarget(cfg FHIRTargetConfig) (*FHIRTarget, error) {
	auth, err := cfg.TokenSource("")
	if err != nil {
		return nil, err
	}
	return &FHIRTarget{Base: cfg.BaseURL, DocSystem: cfg.DocSystem, TypeCode: cfg.TypeCode, Auth: auth}, nil
}

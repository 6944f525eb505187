// Package crmcheck is `ehrbridge crm check`: a read-only go-live
// preflight against the configured CRM (a Salesforce org, a Dataverse
// environment, or the sandbox). It logs in and explains a failure in the
// admin's terms, describes every object the mapping set and write-back
// use, loads the mapping set against those descriptions (every check the
// mappings package makes becomes a checklist line), checks the write-back
// fields, the API allocation left and, on Salesforce, records keyed by an
// older ehrbridge.
//
// It sends GET requests and the token request only, reads metadata and
// counts (SELECT COUNT()), never records, so nothing it prints or returns
// carries patient data.
package crmcheck

// Package sandbox is the embedded CRM sandbox: an HTTP server that speaks
// the subset of the Salesforce REST API ehrbridge's Salesforce connector
// uses, and on its Dataverse side (dataverse.go, identity.go) the
// Microsoft identity platform token endpoints and the Dataverse Web API
// subset of the Dynamics connector, for tests, the demo and `ehrbridge
// sandbox`. The real jsforce, dynamics-web-api and azidentity clients are
// run against it in the tests.
//
// What it does like Salesforce: OAuth 2.0 token grants (client
// credentials, password, refresh token, JWT bearer verified against a
// certificate), sessions that expire with INVALID_SESSION_ID, sObject
// create/get/update/delete, upsert by external id (201/200/300/404/400 with
// Salesforce errorCodes), relationships by external id in bodies, sObject
// Collections of up to 200 records with allOrNone rollback and per-record
// results, SOQL queries with nextRecordsUrl paging, the daily API limit
// (org-wide and per connected app; Options.UsedAtStart starts it near a
// limit) with the Sforce-Limit-Info header in its documented form
// ("api-usage=u/m; per-app-api-usage=u/m(appName=...)") and
// REQUEST_LIMIT_EXCEEDED, the JWT bearer aud rule (login.salesforce.com or
// test.salesforce.com, never its own URL: "audience is invalid"), and the
// Composite limits (25 subrequests, at most 5 collections or queries, else
// LIMIT_EXCEEDED) with collated subrequests run in a shuffled, seeded order
// unless collateSubrequests is false. The real jsforce client is run
// against it in the tests.
//
// What it adds for tests: /sandbox/v1/objects/{Object} (every record),
// /sandbox/v1/stats (API requests per endpoint), and fault injection under
// /sandbox/v1/faults (503 bursts, request-limit windows, latency, and
// drop-after-commit: the write is applied and the connection cut before the
// answer, the ambiguous failure exactly-once must survive).
//
// What it does not do: schemas. Objects and fields are accepted as written
// (a few required fields are enforced), there are no triggers, validation
// rules or sharing, and record ids only look like Salesforce's.
package sandbox

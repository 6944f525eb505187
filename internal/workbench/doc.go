// Package workbench is the record view and mapping workbench of issue 30
// as plain Go data: the CLI (hl7 show, map --explain, test, lint) prints
// it as text and the admin console renders it in the browser, so the two
// cannot disagree.
//
//   - Tree: an HL7 v2 message as segments, fields, repetitions,
//     components and subcomponents, each with the path mappings use and
//     the name its version's definitions give it; FHIR JSON as a tree of
//     JSON paths.
//   - Explain: the ops a mapping set makes of a message, with the
//     expression behind every key and field (map --explain).
//   - RunTests: a set's mapping tests, case by case, with their diffs.
//   - Lint: a set's load problems and warnings as file:line:col.
//
// The package is pure: it does no I/O beyond reading the mapping and test
// files it is given, logs nothing and never writes to a CRM. Its results
// hold patient data (values, keys): they are for an admin who revealed a
// message, never for logs or metrics. Its errors name positions and
// parts, never a value.
package workbench

package hl7

import (
	"strings"
	"testing"
)

func benchParse(b *testing.B, name string) {
	files := corpusFiles(b)
	parts, err := Split(files[name])
	if err != nil {
		b.Fatal(err)
	}
	data := parts[0]
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseADTA01 parses a typical admission (FHIR-Converter
// ADT-A01-01, 1.9 KB, 11 segments).
func BenchmarkParseADTA01(b *testing.B) {
	benchParse(b, "microsoft-FHIR-Converter/ADT-A01-01.hl7")
}

// BenchmarkParseORU60KB parses a 60 KB newborn-screening result (Natus ORU^R01).
func BenchmarkParseORU60KB(b *testing.B) {
	benchParse(b, "CDCgov-trusted-intermediary/Natus/006_Natus_ORU_R01_NBS.hl7")
}

// BenchmarkGetDecoded reads a repeated, escaped leaf value.
func BenchmarkGetDecoded(b *testing.B) {
	m, err := Parse([]byte(adtA01))
	if err != nil {
		b.Fatal(err)
	}
	p := MustPath("PID-3[2].4")
	b.ReportAllocs()
	for b.Loop() {
		if m.Get(p).String() != "OTHER" {
			b.Fatal("wrong value")
		}
	}
}

// BenchmarkEncodeADTA01 re-encodes an unchanged admission.
func BenchmarkEncodeADTA01(b *testing.B) {
	files := corpusFiles(b)
	parts, _ := Split(files["microsoft-FHIR-Converter/ADT-A01-01.hl7"])
	m, err := Parse(parts[0])
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(parts[0])))
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Bytes()
	}
}

// BenchmarkSplitBaseline is the floor any parser stands on: splitting the
// same ADT^A01 into segments and fields with strings.Split, no delimiters
// read, no validation, no escapes. Parse's cost is reported against it.
func BenchmarkSplitBaseline(b *testing.B) {
	files := corpusFiles(b)
	parts, _ := Split(files["microsoft-FHIR-Converter/ADT-A01-01.hl7"])
	data := parts[0]
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, seg := range strings.Split(string(data), "\r") {
			n += len(strings.Split(seg, "|"))
		}
		if n == 0 {
			b.Fatal("nothing split")
		}
	}
}

package mappings

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/hl7"
)

// benchADT is an ADT^A08 of the size real feeds send (~1.3 KB, 10 segments).
var benchADT = strings.Join([]string{
	`MSH|^~\&|EPIC|GENHOSP|EHRBRIDGE|CRM|20260105103000||ADT^A08^ADT_A01|CTRL000123|P|2.5.1`,
	`EVN|A08|20260105103000|||U0042^NURSE^ANNA`,
	`PID|1||99887^^^OTHER^PI~12345^^^GENHOSP^MR~555-12-3456^^^SSA^SS||O'BRIEN^MARY^ANN^^MS||19800517|F|||12 MAIN ST^APT 4^SPRINGFIELD^IL^62701^USA||^PRN^PH^^1^217^5551234~^NET^Internet^mary@example.org|^WPN^PH^^1^217^5550999|EN|M|CHR|ACCT0001^^^GENHOSP^AN|||N||||||N`,
	`PD1|||GENERAL HOSPITAL^^10001|1234567890^PRIMARY^PAT^^^DR^MD`,
	`NK1|1|O'BRIEN^JOHN|SPO^Spouse^HL70063|12 MAIN ST^^SPRINGFIELD^IL^62701|^PRN^PH^^1^217^5551234`,
	`PV1|1|I|4WEST^401^B^GENHOSP||||1234^WELBY^MARCUS^^^DR|||MED||||7|||1234^WELBY^MARCUS^^^DR|IN|VN777^^^GENHOSP^VN|||||||||||||||||||||||||20260104080000-0600`,
	`PV2|||^CHEST PAIN||||||20260107|3`,
	`AL1|1|DA|70618^PENICILLIN^RXNORM|SV|HIVES`,
	`DG1|1||R07.9^Chest pain, unspecified^I10||20260104|A`,
	`IN1|1|BCBS01^Blue Cross PPO|54321|BLUE CROSS BLUE SHIELD IL`,
}, "\r") + "\r"

// benchORU is an ORU^R01 with 20 OBX results.
var benchORU = func() string {
	var b strings.Builder
	b.WriteString(`MSH|^~\&|LAB|GENHOSP|EHRBRIDGE|CRM|20260105103000||ORU^R01^ORU_R01|LAB000123|P|2.5.1` + "\r")
	b.WriteString(`PID|1||12345^^^GENHOSP^MR||O'BRIEN^MARY^ANN||19800517|F` + "\r")
	b.WriteString(`OBR|1|PLC123|FIL456^LAB|24323-8^Comprehensive metabolic panel^LN|||20260105090000-0600` + "\r")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&b, "OBX|%d|NM|%d-%d^Analyte %d^LN||%d.%d|mg/dL^^UCUM|10-100|N|||F|||20260105091500-0600\r", i, 1000+i, i%10, i, 40+i, i%10)
	}
	return b.String()
}()

func benchMap(b *testing.B, mappingFile, msg string) { benchSet(b, "testdata/"+mappingFile, msg) }

// benchSet maps msg with the mappings at path, once per iteration.
func benchSet(b *testing.B, path, msg string) {
	set, err := Load([]string{path}, Options{Zone: time.UTC})
	if err != nil {
		b.Fatal(err)
	}
	m, err := hl7.Parse([]byte(msg))
	if err != nil {
		b.Fatal(err)
	}
	in := Input{HL7: m}
	if res, err := set.Map(in); err != nil || len(res.Ops) == 0 {
		b.Fatalf("map: %v, %d ops", err, len(res.Ops))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Map(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapADT maps a parsed ADT^A08 to a patient and an encounter
// (21 fields). Goal: under 20 µs on one core.
func BenchmarkMapADT(b *testing.B) { benchMap(b, "bench_adt.yaml", benchADT) }

// BenchmarkMapORU maps a parsed 20-OBX ORU^R01 to a patient and 20
// observations.
func BenchmarkMapORU(b *testing.B) { benchMap(b, "bench_oru.yaml", benchORU) }

// BenchmarkParseADTBaseline parses the same ADT: the cost every message
// already pays at ingest, to compare mapping against in one run.
func BenchmarkParseADTBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hl7.Parse([]byte(benchADT)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseORUBaseline parses the same ORU.
func BenchmarkParseORUBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hl7.Parse([]byte(benchORU)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapFHIRObservation maps a Synthea Observation (FHIRPath on raw
// JSON, 7 fields).
func BenchmarkMapFHIRObservation(b *testing.B) {
	set, err := Load([]string{"testdata/bench_fhir.yaml"}, Options{Zone: time.UTC})
	if err != nil {
		b.Fatal(err)
	}
	res, err := os.ReadFile("../configs/samples/fhir/Observation.json")
	if err != nil {
		b.Fatal(err)
	}
	in := Input{FHIR: res}
	if r, err := set.Map(in); err != nil || len(r.Ops) != 1 {
		b.Fatalf("map: %v %+v", err, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Map(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeFHIRBaseline decodes the same Observation with
// encoding/json into a generic value: the floor for any JSON reader.
func BenchmarkDecodeFHIRBaseline(b *testing.B) {
	res, err := os.ReadFile("../configs/samples/fhir/Observation.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(res, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// benchShipped maps msg with a shipped mapping set (every mapping of the
// set that accepts it: patient, encounter, allergies, conditions; or the
// observations), as the daemon does per record. Their keys are what issue
// 25 made longer (namespaces, blank-part rules): compare with the same
// benchmark on an earlier commit.
func benchShipped(b *testing.B, set, msg string) { benchSet(b, "../configs/mappings/"+set, msg) }

func BenchmarkShippedHealthCloudADT(b *testing.B) { benchShipped(b, "healthcloud", benchADT) }
func BenchmarkShippedHealthCloudORU(b *testing.B) { benchShipped(b, "healthcloud", benchORU) }
func BenchmarkShippedDynamicsADT(b *testing.B)    { benchShipped(b, "dynamics", benchADT) }
func BenchmarkShippedDynamicsORU(b *testing.B)    { benchShipped(b, "dynamics", benchORU) }

package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestPlaintextNeedsOptOut checks the transport security rule for every
// listener and URL kind: a loopback address or host loads; any other one
// in clear is refused at the key, naming the opt-out; with the opt-out it
// loads and Config.Insecure reports it.
func TestPlaintextNeedsOptOut(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "smart.pem")
	if err := os.WriteFile(keyFile, []byte("not parsed by config"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each template takes the address or URL (%[1]s) and the opt-out
	// line, already indented (%[2]s).
	cases := []struct {
		name      string
		tmpl      string
		path, opt string
		loopback  []string
		remote    []string
	}{
		{"admin", "admin:\n  listen: %[1]s\n%[2]s", "admin.listen", "admin.insecure_plaintext",
			[]string{"127.0.0.1:8080", "127.9.9.9:8080", "[::1]:8080", "localhost:8080", "LOCALHOST:8080"},
			[]string{"0.0.0.0:8080", ":8080", "[::]:8080", "10.1.2.3:8080", "ehrbridge.hospital.example:8080", "localhost.example:8080"}},
		{"mllp", "sources:\n  mllp:\n    - name: adt\n      listen: %[1]s\n%[2]s", "sources.mllp[0].listen", "sources.mllp[0].insecure_plaintext",
			[]string{"127.0.0.1:2575", "[::1]:0"},
			[]string{"0.0.0.0:2575", ":2575", "192.168.0.10:2575"}},
		{"notifications", "sources:\n  fhir:\n    - name: ehr\n      base_url: https://ehr.example/fhir\n      subscription:\n        listen: %[1]s\n        secret_env: EHR_WORD\n%[2]s",
			"sources.fhir[0].subscription.listen", "sources.fhir[0].subscription.insecure_plaintext",
			[]string{"127.0.0.1:9443"}, []string{"0.0.0.0:9443", ":9443"}},
		{"sandbox", "crm:\n  sandbox:\n    embed: true\n    listen: %[1]s\n%[2]s", "crm.sandbox.listen", "crm.sandbox.insecure_plaintext",
			[]string{"127.0.0.1:8089"}, []string{"0.0.0.0:8089"}},
		{"fhir base_url", "sources:\n  fhir:\n    - name: ehr\n      base_url: %[1]s\n%[2]s", "sources.fhir[0].base_url", "sources.fhir[0].insecure_plaintext",
			[]string{"http://127.0.0.1:8080/fhir", "http://localhost/fhir", "http://[::1]/fhir", "https://ehr.example/fhir"},
			[]string{"http://ehr.example/fhir", "HTTP://ehr.example/fhir", "http://10.0.0.5:8080/fhir", "http://user:pw@ehr.example/fhir"}},
		{"fhir smart_token_url", "sources:\n  fhir:\n    - name: ehr\n      base_url: https://ehr.example/fhir\n      smart_token_url: %[1]s\n      smart_client_id: c\n      smart_key_file: " + keyFile + "\n%[2]s",
			"sources.fhir[0].smart_token_url", "sources.fhir[0].insecure_plaintext",
			[]string{"http://127.0.0.1/token", "https://auth.example/token"}, []string{"http://auth.example/token"}},
		{"writeback fhir base_url", "crm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    fhir:\n      base_url: %[1]s\n%[2]s",
			"writeback.target.fhir.base_url", "writeback.target.fhir.insecure_plaintext",
			[]string{"http://127.0.0.1:8080/fhir"}, []string{"http://ehr.example/fhir"}},
		{"writeback fhir smart_token_url", "crm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    fhir:\n      base_url: https://ehr.example/fhir\n      smart_token_url: %[1]s\n      smart_client_id: c\n      smart_key_file: " + keyFile + "\n%[2]s",
			"writeback.target.fhir.smart_token_url", "writeback.target.fhir.insecure_plaintext",
			[]string{"http://localhost/token"}, []string{"http://auth.example/token"}},
		{"writeback mllp", "crm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n    mllp: %[1]s\n%[2]s", "writeback.target.mllp", "writeback.target.insecure_plaintext",
			[]string{"127.0.0.1:6661", "localhost:6661"}, []string{"ehr.example:6661", "0.0.0.0:6661"}},
		{"salesforce login_url", "crm:\n  salesforce:\n    login_url: %[1]s\n    client_id: c\n    client_secret_env: EHR_WORD\n%[2]s",
			"crm.salesforce.login_url", "crm.salesforce.insecure_plaintext",
			[]string{"http://127.0.0.1:8089", "https://login.salesforce.com"}, []string{"http://login.example.com"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The opt-out sits beside the key it excuses, indented like it.
			line := tc.tmpl[:strings.Index(tc.tmpl, "%[1]s")]
			line = line[strings.LastIndexByte(line, '\n')+1:]
			opt := line[:len(line)-len(strings.TrimLeft(line, " "))] + InsecureKey + ": true\n"
			parse := func(addr, optLine string) (*Config, error) {
				text := strings.ReplaceAll(strings.ReplaceAll(tc.tmpl, "%[1]s", `"`+addr+`"`), "%[2]s", optLine)
				return Parse(filepath.Join(dir, "t.yaml"), []byte("data_dir: "+dir+"\n"+text), lookupTestEnv)
			}
			for _, addr := range tc.loopback {
				c, err := parse(addr, "")
				if err != nil {
					t.Errorf("%s: %v", addr, err)
					continue
				}
				if got := c.Insecure(); got != nil {
					t.Errorf("%s: Insecure() = %v, want none", addr, got)
				}
				// An opt-out that excuses nothing is refused: left in
				// place it would silently allow plaintext later.
				if _, err := parse(addr, opt); err == nil || !strings.Contains(err.Error(), tc.opt+": nothing in") {
					t.Errorf("%s with an unneeded opt-out: %v, want a problem at %s", addr, err, tc.opt)
				}
			}
			for _, addr := range tc.remote {
				_, err := parse(addr, "")
				if err == nil {
					t.Errorf("%s: loaded without %s", addr, tc.opt)
					continue
				}
				msg := err.Error()
				if !strings.Contains(msg, ": "+tc.path+": ") || !strings.Contains(msg, "set "+tc.opt+": true") ||
					!strings.Contains(msg, "t.yaml:") {
					t.Errorf("%s: problem does not name the key %s and the opt-out %s with a position:\n%s", addr, tc.path, tc.opt, msg)
				}
				if strings.Contains(msg, "pw@") || strings.Contains(msg, ":pw") {
					t.Errorf("%s: problem shows the URL's credentials:\n%s", addr, msg)
				}
				c, err := parse(addr, opt)
				if err != nil {
					t.Errorf("%s with %s: %v", addr, tc.opt, err)
					continue
				}
				want := []InsecureSetting{{Key: tc.opt, Excuses: tc.path}}
				if got := c.Insecure(); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: Insecure() = %v, want %v", addr, got, want)
				}
			}
		})
	}
}

// One opt-out excuses every plaintext URL of its section, and is reported
// once with all of them.
func TestInsecureListsEveryExcusedKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "smart.pem")
	if err := os.WriteFile(keyFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := "data_dir: " + dir + "\nadmin:\n  listen: 0.0.0.0:8080\n  insecure_plaintext: true\nsources:\n  fhir:\n    - name: ehr\n      base_url: http://ehr.example/fhir\n" +
		"      smart_token_url: http://ehr.example/token\n      smart_client_id: c\n      smart_key_file: " + keyFile + "\n      insecure_plaintext: true\n"
	c, err := Parse(filepath.Join(dir, "t.yaml"), []byte(data), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []InsecureSetting{
		{Key: "admin.insecure_plaintext", Excuses: "admin.listen"},
		{Key: "sources.fhir[0].insecure_plaintext", Excuses: "sources.fhir[0].base_url, sources.fhir[0].smart_token_url"},
	}
	if got := c.Insecure(); !reflect.DeepEqual(got, want) {
		t.Errorf("Insecure() = %v, want %v", got, want)
	}
}

// TLS on a listener makes a non-loopback address fine, and makes the
// opt-out unneeded; allowed_clients needs mutual TLS and exact names.
func TestListenerTLSAndAllowedClients(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "data_dir: " + dir + "\nsources:\n  mllp:\n    - name: adt\n      listen: 0.0.0.0:2575\n      tls:\n        cert_file: c.pem\n        key_file: k.pem\n"
	for _, tc := range []struct{ extra, err string }{
		{"", ""},
		{"        client_ca_file: ca.pem\n        allowed_clients: [lab.hospital.example, \"spiffe://hospital.example/lab\"]\n", ""},
		{"        allowed_clients: [lab.hospital.example]\n", "sources.mllp[0].tls.allowed_clients: needs client_ca_file"},
		{"        client_ca_file: ca.pem\n        allowed_clients: [\"*.hospital.example\"]\n", "sources.mllp[0].tls.allowed_clients[0]: \"*.hospital.example\": give a certificate's exact"},
		{"        client_ca_file: ca.pem\n        allowed_clients: [\"\"]\n", "sources.mllp[0].tls.allowed_clients[0]"},
		{"      insecure_plaintext: true\n", "sources.mllp[0].insecure_plaintext: nothing in sources.mllp[0] needs it"},
	} {
		_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+tc.extra), lookupTestEnv)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.extra, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.err)
		}
	}
}

// The write-back MLLP target's tls section: with it a remote EHR needs no
// opt-out; its files are checked and resolved; it applies to mllp only.
func TestWritebackMLLPTLS(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "data_dir: " + dir + "\ncrm:\n  sandbox:\n    embed: true\nwriteback:\n  target:\n"
	c, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+"    mllp: ehr.example:6661\n    tls:\n      ca_file: ca.pem\n      cert_file: c.pem\n      key_file: k.pem\n      server_name: mllp.ehr.example\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &TLSClient{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem"), ServerName: "mllp.ehr.example", MinVersion: "1.2"}
	if got := c.Writeback.Target.TLS; !reflect.DeepEqual(got, want) {
		t.Errorf("tls = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ extra, err string }{
		{"    mllp: ehr.example:6661\n    tls:\n      cert_file: c.pem\n", "writeback.target.tls: mutual TLS needs both cert_file and key_file"},
		{"    mllp: ehr.example:6661\n    tls:\n      ca_file: nope.pem\n", "writeback.target.tls.ca_file: cannot read"},
		{"    mllp: ehr.example:6661\n    tls:\n      min_version: \"1.1\"\n", "writeback.target.tls.min_version"},
		{"    dir: out\n    tls:\n      ca_file: ca.pem\n", "writeback.target.tls: applies to writeback.target.mllp only"},
		{"    mllp: ehr.example:6661\n    tls: {}\n    insecure_plaintext: true\n", "writeback.target.insecure_plaintext: nothing in writeback.target needs it"},
	} {
		_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+tc.extra), lookupTestEnv)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.err)
		}
	}
}

// The admin listener's tls section: with it an address that is not
// loopback lints without admin.insecure_plaintext (which then excuses
// nothing); its files are checked and resolved; it needs admin.listen.
func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "data_dir: " + dir + "\nadmin:\n"
	c, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+"  listen: 0.0.0.0:8443\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n    client_ca_file: ca.pem\n    allowed_clients: [ops.hospital.example]\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &TLSServer{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem"), ClientCAFile: filepath.Join(dir, "ca.pem"),
		AllowedClients: []string{"ops.hospital.example"}, MinVersion: "1.2"}
	got := *c.Admin.TLS
	got.KeyPassphrase = SecretRef{} // unset; holds its resolution base
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("tls = %+v, want %+v", &got, want)
	}
	if got := c.Insecure(); len(got) != 0 {
		t.Errorf("Insecure() = %v, want none", got)
	}
	for _, tc := range []struct{ extra, err string }{
		{"  listen: 0.0.0.0:8443\n", "admin.listen: plaintext listener"},
		{"  listen: 0.0.0.0:8443\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n  insecure_plaintext: true\n", "admin.insecure_plaintext: nothing in admin needs it"},
		{"  listen: 0.0.0.0:8443\n  tls:\n    cert_file: nope.pem\n    key_file: k.pem\n", "admin.tls.cert_file: cannot read"},
		{"  listen: 0.0.0.0:8443\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n    allowed_clients: [ops]\n", "admin.tls.allowed_clients: needs client_ca_file"},
		{"  listen: 0.0.0.0:8443\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n    min_version: \"1.1\"\n", "admin.tls.min_version"},
		{"  listen: \"off\"\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n", "admin.tls: admin.listen is off"},
	} {
		_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(base+tc.extra), lookupTestEnv)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.err)
		}
	}
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoadFullFile(t *testing.T) {
	t.Setenv("EHR_PORT", "2575")
	t.Setenv("EHR_HASH_KEY", "env-hash-key-value")
	t.Setenv("EHR_LOG_LEVEL", "") // set but empty: the default applies
	t.Setenv("EHR_MAX_CONN", "128")

	c, err := Load("testdata/good/full.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	dir, _ := filepath.Abs("testdata/good")
	certs := filepath.Join(dir, "certs")

	want := &Config{
		DataDir: filepath.Join(dir, "state"),
		Log: LogConfig{
			Format:  "json",
			Level:   "debug",
			Output:  filepath.Join(dir, "logs", "ehrbridge.log"),
			HashKey: SecretRef{Env: "EHR_HASH_KEY", Key: "hash_key"},
		},
		Admin: AdminConfig{Listen: "127.0.0.1:9090"},
		Sources: SourcesConfig{MLLP: []MLLPSource{
			{
				Name:              "adt",
				Listen:            ":2575",
				MaxFrameSize:      4 * MiB,
				ReadTimeout:       Duration(45 * time.Second),
				IdleTimeout:       Duration(time.Hour),
				FirstFrameTimeout: DefaultFirstFrame,
				WriteTimeout:      Duration(2 * time.Second),
				MaxConnections:    128,
				HashIgnore:        []string{"MSH-7"},
				TLS: &TLSServer{
					CertFile:       filepath.Join(certs, "server.crt"),
					KeyFile:        filepath.Join(certs, "server.key"),
					KeyPassphrase:  SecretRef{Key: "key_passphrase"},
					ClientCAFile:   filepath.Join(certs, "ca.crt"),
					AllowedClients: []string{"lab-interface.hospital.example", "spiffe://hospital.example/ehr"},
					MinVersion:     "1.3",
				},
			},
			{
				Name:              "orm_2",
				Listen:            "0.0.0.0:2576",
				InsecurePlaintext: true,
				MaxFrameSize:      MiB,
				ReadTimeout:       DefaultReadTimeout,
				IdleTimeout:       DefaultIdleTimeout,
				FirstFrameTimeout: DefaultFirstFrame,
				WriteTimeout:      DefaultWriteTimeout,
				MaxConnections:    DefaultMaxConnections,
				HashIgnore:        []string{"MSH-7"},
			},
		}},
		Checkpoint: CheckpointConfig{DedupeWindow: DefaultDedupeWindow, PayloadRetention: DefaultPayloadRetention, SweepInterval: DefaultSweepInterval},
	}
	want.pos = c.pos
	want.insecure = []InsecureSetting{{Key: "sources.mllp[1].insecure_plaintext", Excuses: "sources.mllp[1].listen"}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config differs\n got: %+v\nwant: %+v", c, want)
		for i := range c.Sources.MLLP {
			t.Logf("source %d: %+v tls=%+v", i, c.Sources.MLLP[i], c.Sources.MLLP[i].TLS)
		}
	}

	key, err := c.Log.HashKey.Resolve()
	if err != nil || key != "env-hash-key-value" {
		t.Errorf("HashKey.Resolve() = %q, %v", key, err)
	}
}

func TestLoadMinimalFile(t *testing.T) {
	c, err := Load("testdata/good/minimal.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Admin.Listen != "" {
		t.Errorf(`admin.listen "off" loaded as %q, want ""`, c.Admin.Listen)
	}
	if len(c.Sources.MLLP) != 0 {
		t.Errorf("sources = %v, want none", c.Sources.MLLP)
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	for _, data := range []string{"", "# only a comment\n", "---\n", "~\n", "{}\n", "\ufeff"} {
		c, err := Parse("dir/empty.yaml", []byte(data), lookupTestEnv)
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		want := Default()
		want.DataDir = filepath.Join(baseDir("dir/empty.yaml"), "data")
		want.pos = c.pos
		if !reflect.DeepEqual(c, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", data, c, want)
		}
	}
}

func TestUTF16File(t *testing.T) {
	text := "log:\n  level: debug\n  formt: json\n"
	for _, bom := range [][]byte{{0xFF, 0xFE}, {0xFE, 0xFF}} {
		data := append([]byte(nil), bom...)
		for _, r := range text {
			if bom[0] == 0xFF {
				data = append(data, byte(r), 0)
			} else {
				data = append(data, 0, byte(r))
			}
		}
		_, err := Parse("u.yaml", data, lookupTestEnv)
		want := `u.yaml:3:3: unknown key "formt" in log; did you mean "format"?`
		if err == nil || err.Error() != want {
			t.Errorf("BOM % x: got %v, want %s", bom, err, want)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.DataDir != "./data" || c.Log.Format != "text" || c.Log.Level != "info" ||
		c.Log.Output != "stderr" || c.Admin.Listen != "127.0.0.1:8080" || c.Log.HashKey.IsSet() {
		t.Errorf("Default() = %+v", c)
	}
	// A default source is what a source with only its required keys gets.
	cfg, err := Parse("x.yaml", []byte("sources:\n  mllp:\n    - {name: a, listen: ':1', tls: {cert_file: testdata/good/certs/server.crt, key_file: testdata/good/certs/server.key}}\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sources.MLLP[0]
	if s.MaxFrameSize != 10*MiB || s.ReadTimeout.Std() != 30*time.Second || s.IdleTimeout.Std() != 10*time.Minute ||
		s.WriteTimeout.Std() != 10*time.Second || s.MaxConnections != 256 || s.TLS.MinVersion != "1.2" ||
		s.TLS.ClientCAFile != "" || s.TLS.KeyPassphrase.IsSet() {
		t.Errorf("defaults of a source: %+v tls=%+v", s, s.TLS)
	}
	if file, line, col := Default().Pos("log.level"); file != "" || line != 0 || col != 0 {
		t.Errorf("Default().Pos = %q %d %d, want nothing", file, line, col)
	}
}

func TestLoadMissingFile(t *testing.T) {
	c, err := Load("testdata/does-not-exist.yaml")
	if c != nil || err == nil {
		t.Fatalf("Load = %v, %v", c, err)
	}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("error %T %v, want one Problem", err, err)
	}
	if got, want := err.Error(), "testdata/does-not-exist.yaml: cannot read: no such file"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Col: 5, Msg: "bad"}, "a.yaml:3:5: bad"},
		{Problem{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Problem{File: "a.yaml", Msg: "cannot read: x"}, "a.yaml: cannot read: x"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
	ps := Problems{tests[0].p, tests[2].p}
	if got, want := ps.Error(), "a.yaml:3:5: bad\na.yaml: cannot read: x"; got != want {
		t.Errorf("Problems.Error() = %q, want %q", got, want)
	}
}

func TestPosAndProblem(t *testing.T) {
	data := "log:\n  level: debug\nsources:\n  mllp:\n    - name: adt\n      listen: \"127.0.0.1:2575\"\n"
	c, err := Parse("p.yaml", []byte(data), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path      string
		line, col int
	}{
		{"", 1, 1},
		{"log", 1, 1},
		{"log.level", 2, 10},
		{"log.format", 1, 1}, // not written: its section
		{"sources.mllp", 4, 3},
		{"sources.mllp[0]", 5, 7},
		{"sources.mllp[0].name", 5, 13},
		{"sources.mllp[0].listen", 6, 15},
		{"sources.mllp[0].read_timeout", 5, 7},
		{"sources.mllp[0].tls.cert_file", 5, 7},
		{"admin.listen", 1, 1},
	}
	for _, tt := range tests {
		file, line, col := c.Pos(tt.path)
		if file != "p.yaml" || line != tt.line || col != tt.col {
			t.Errorf("Pos(%q) = %s:%d:%d, want p.yaml:%d:%d", tt.path, file, line, col, tt.line, tt.col)
		}
	}
	p := c.Problem("sources.mllp[0].listen", "port %d is reserved", 2575)
	if got, want := p.String(), "p.yaml:6:15: sources.mllp[0].listen: port 2575 is reserved"; got != want {
		t.Errorf("Problem() = %q, want %q", got, want)
	}
}

func TestEnvExpansionIntoValues(t *testing.T) {
	env := map[string]string{"PORT": "2600", "EMPTY": "", "CONNS": "12", "TIMEOUT": "1m", "SIZE": "2MiB", "SP": "a b"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	data := `
data_dir: "${SP}/$$HOME/${UNSET:-x y:/z}/$x"
log:
  level: ${UNSET:-warn}
  format: ${EMPTY:-json}
admin:
  listen: ${EMPTY:-}
sources:
  mllp:
    - name: adt
      listen: "127.0.0.1:${PORT:-2575}"
      max_connections: ${CONNS}
      read_timeout: ${TIMEOUT}
      idle_timeout: ${UNSET:-}
      max_frame_size: ${SIZE}
`
	c, err := Parse("/etc/ehrbridge/e.yaml", []byte(data), lookup)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources.MLLP[0]
	checks := []struct{ name, got, want string }{
		{"data_dir", c.DataDir, "/etc/ehrbridge/a b/$HOME/x y:/z/$x"},
		{"log.level", c.Log.Level, "warn"},
		{"log.format", c.Log.Format, "json"},
		{"admin.listen", c.Admin.Listen, ""},
		{"listen", s.Listen, "127.0.0.1:2600"},
		{"read_timeout", s.ReadTimeout.String(), "1m0s"},
		{"idle_timeout", s.IdleTimeout.String(), DefaultIdleTimeout.String()},
		{"max_frame_size", s.MaxFrameSize.String(), "2MiB"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	if s.MaxConnections != 12 {
		t.Errorf("max_connections = %d, want 12", s.MaxConnections)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "alpha", "E": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want string
		fromEnv  bool
		err      string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "alpha", fromEnv: true},
		{in: "x${A}y${A}", want: "xalphayalpha", fromEnv: true},
		{in: "${U:-def}", want: "def", fromEnv: true},
		{in: "${U:-}", want: "", fromEnv: true},
		{in: "${E:-def}", want: "def", fromEnv: true},
		{in: "${E}", want: "", fromEnv: true},
		{in: "${A:-def}", want: "alpha", fromEnv: true},
		{in: "${U:-a b:c/d}", want: "a b:c/d", fromEnv: true},
		{in: "$$", want: "$"},
		{in: "$${A}", want: "${A}"},
		{in: "$A $ $", want: "$A $ $"},
		{in: "cost: 5$", want: "cost: 5$"},
		{in: "${U}", err: "environment variable U is not set (use ${U:-default} to give a default)"},
		{in: "${", err: `malformed environment reference: "${" without a closing "}"`},
		{in: "abc${A", err: `malformed environment reference: "${" without a closing "}"`},
		{in: "${}", err: `malformed environment reference "${}": empty variable name`},
		{in: "${1X}", err: `malformed environment reference "${1X}": a variable name cannot start with a digit`},
		{in: "${A B}", err: `malformed environment reference "${A B}": a variable name has only letters, digits and "_"`},
		{in: "${A:=b}", err: `malformed environment reference "${A:=b}": a variable name has only letters, digits and "_" (write a default as ${NAME:-default})`},
	}
	for _, tt := range tests {
		got, fromEnv, errs := expandEnv(tt.in, lookup)
		if tt.err != "" {
			if len(errs) != 1 || errs[0] != tt.err {
				t.Errorf("expandEnv(%q) errors = %q, want %q", tt.in, errs, tt.err)
			}
			continue
		}
		if len(errs) > 0 || got != tt.want || fromEnv != tt.fromEnv {
			t.Errorf("expandEnv(%q) = %q, %v, %q; want %q, %v", tt.in, got, fromEnv, errs, tt.want, tt.fromEnv)
		}
	}
	// Several bad references in one value are all reported.
	if _, _, errs := expandEnv("${U1}-${U2}", lookup); len(errs) != 2 {
		t.Errorf("two unset variables gave %q", errs)
	}
}

func TestByteSize(t *testing.T) {
	good := map[string]ByteSize{
		"0": 0, "1024": 1024, "10MiB": 10 * MiB, "10 MiB": 10 * MiB, "1kib": KiB, "1KB": 1000,
		"3MB": 3_000_000, "2GB": 2_000_000_000, "1GiB": GiB, "7B": 7,
	}
	for in, want := range good {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "10 potatoes", "1TB", "99999999999999999999", "9999999999999GiB"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", in, got)
		}
	}
	strs := map[ByteSize]string{0: "0B", 512: "512B", KiB: "1KiB", 10 * MiB: "10MiB", GiB: "1GiB", 1000: "1KB", 1500: "1500B", 2 * GiB: "2GiB"}
	for b, want := range strs {
		if got := b.String(); got != want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	good := map[string]time.Duration{"30s": 30 * time.Second, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute, "0": 0, "250ms": 250 * time.Millisecond, "-1s": -time.Second}
	for in, want := range good {
		if got, err := parseDuration(in); err != nil || got.Std() != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"30", "1.5", "-5", "soon", "", "5 minutes"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
	if _, err := parseDuration("30"); !errors.Is(err, errNoUnit) {
		t.Errorf("parseDuration(\"30\") error = %v, want errNoUnit", err)
	}
}

func TestScalarTypes(t *testing.T) {
	type target struct {
		S  string   `yaml:"s"`
		I  int      `yaml:"i"`
		U  uint16   `yaml:"u"`
		B  bool     `yaml:"b"`
		F  float64  `yaml:"f"`
		L  []string `yaml:"l"`
		D  Duration `yaml:"d"`
		Z  ByteSize `yaml:"z"`
		NS string   `yaml:"ns"`
	}
	data := "s: 1.20\ni: -7\nu: 65535\nb: TRUE\nf: 2.5\nl: [a, 1, true]\nd: 1m\nz: 1KiB\nns: ~\n"
	v := target{NS: "kept"}
	_, probs, _ := decodeDocument("t.yaml", []byte(data), lookupTestEnv, &v)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	want := target{S: "1.20", I: -7, U: 65535, B: true, F: 2.5, L: []string{"a", "1", "true"}, D: Duration(time.Minute), Z: KiB, NS: "kept"}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got %+v, want %+v", v, want)
	}

	bad := "s: [x]\ni: 1.5\nu: 65536\nb: yes\nf: .nan\nl: {a: b}\n"
	_, probs, _ = decodeDocument("t.yaml", []byte(bad), lookupTestEnv, &target{})
	want2 := []string{
		`t.yaml:1:4: s: expected a string, got a list`,
		`t.yaml:2:4: i: expected an integer, got "1.5"`,
		`t.yaml:3:4: u: expected a non-negative integer, got "65536": out of range`,
		`t.yaml:4:4: b: expected a boolean, got "yes": use true or false`,
		`t.yaml:5:4: f: expected a number, got ".nan"`,
		`t.yaml:6:4: l: expected a list, got a mapping`,
	}
	if got := strings.Split(probs.Sorted().Error(), "\n"); !reflect.DeepEqual(got, want2) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want2, "\n"))
	}
}

func TestTooManyProblems(t *testing.T) {
	var b strings.Builder
	for i := range 500 {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(strings.Repeat("y", i/26))
		b.WriteString(": 1\n")
	}
	_, err := Parse("many.yaml", []byte(b.String()), lookupTestEnv)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	if len(ps) != maxProblems+1 || !strings.Contains(ps[len(ps)-1].Msg, "too many problems") {
		t.Errorf("got %d problems ending with %v", len(ps), ps[len(ps)-1])
	}
}

// TestMergeBomb checks that nested merges and aliases, which yaml.v3 does
// not expand in a Node tree, are not expanded exponentially by the decoder.
func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-0: &a0 {read_timeout: 1s}\n")
	for i := 1; i <= 30; i++ {
		refs := strings.Repeat("*a"+strconv.Itoa(i-1)+", ", 9) + "*a" + strconv.Itoa(i-1)
		b.WriteString("x-" + strconv.Itoa(i) + ": &a" + strconv.Itoa(i) + " {<<: [" + refs + "]}\n")
	}
	b.WriteString("sources:\n  mllp:\n")
	for i := range 50 {
		b.WriteString("    - {<<: *a30, name: s" + strconv.Itoa(i) + ", listen: '127.0.0.1:" + strconv.Itoa(3000+i) + "'}\n")
	}
	done := make(chan error, 1)
	go func() {
		_, err := Parse("bomb.yaml", []byte(b.String()), lookupTestEnv)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Parse did not finish: merges are expanded exponentially")
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"name", "listen", "max_frame_size", "tls", "log", "data_dir"}
	tests := map[string]string{
		"listn": "listen", "lisetn": "listen", "tsl": "tls", "nmae": "name", "data_dri": "data_dir",
		"foo": "", "x": "", "max_frame": "", "completely_different": "",
	}
	for in, want := range tests {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRelativePathsFollowConfigDir(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf")
	if err := os.MkdirAll(filepath.Join(sub, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls/c.pem", "tls/k.pem"} {
		if err := os.WriteFile(filepath.Join(sub, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	absCA := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(absCA, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := "data_dir: var\nlog:\n  output: stdout\nsources:\n  mllp:\n    - name: a\n      listen: ':1'\n" +
		"      tls: {cert_file: tls/c.pem, key_file: ./tls/k.pem, client_ca_file: " + absCA + "}\n"
	path := filepath.Join(sub, "ehrbridge.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	// Load from another working directory must give the same paths.
	t.Chdir(dir)
	c, err := Load("conf/ehrbridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tls := c.Sources.MLLP[0].TLS
	if c.DataDir != filepath.Join(sub, "var") || tls.CertFile != filepath.Join(sub, "tls", "c.pem") ||
		tls.KeyFile != filepath.Join(sub, "tls", "k.pem") || tls.ClientCAFile != absCA || c.Log.Output != "stdout" {
		t.Errorf("paths not resolved against the config dir: data_dir=%q tls=%+v output=%q", c.DataDir, tls, c.Log.Output)
	}

	// The same relative file is missing when the config is elsewhere, and
	// the message quotes the path as written.
	_, err = Parse(filepath.Join(dir, "other.yaml"), []byte("sources:\n  mllp:\n    - name: a\n      listen: ':1'\n      tls: {cert_file: tls/c.pem, key_file: tls/k.pem}\n"), lookupTestEnv)
	if err == nil || !strings.Contains(err.Error(), `sources.mllp[0].tls.cert_file: cannot read "tls/c.pem": no such file`) {
		t.Errorf("err = %v", err)
	}
}

func TestUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can read any file")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(f, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	if got := checkReadable(f); got != "permission denied" {
		t.Errorf("checkReadable = %q, want permission denied", got)
	}
}

func TestParseSuccessReturnsNilError(t *testing.T) {
	// Parse must return a nil error interface, not a nil Problems, on
	// success; otherwise err != nil would be true for callers.
	_, err := Parse("ok.yaml", nil, lookupTestEnv)
	if err != nil {
		t.Fatalf("err = %#v", err)
	}
}

package configvalue

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The parsers, SecretRef and CheckReadable are tested through
// internal/config, which decodes every file with them; these cover what
// only the components call.

func TestTLSClientConfig(t *testing.T) {
	c, err := (&TLSClient{ServerName: "ehr.example", MinVersion: "1.3"}).Config()
	if err != nil || c.ServerName != "ehr.example" || c.MinVersion != tls.VersionTLS13 || c.RootCAs != nil || len(c.Certificates) != 0 {
		t.Errorf("Config() = %+v, %v; want server name, TLS 1.3, system roots, no client certificate", c, err)
	}
	if c, err := (&TLSClient{}).Config(); err != nil || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("default: %+v, %v; want TLS 1.2", c, err)
	}
	dir := t.TempDir()
	if _, err := (&TLSClient{CAFile: filepath.Join(dir, "ca.pem")}).Config(); err == nil || !strings.HasPrefix(err.Error(), "tls: CA file: ") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := (&TLSClient{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}).Config(); err == nil ||
		!strings.HasPrefix(err.Error(), "tls: loading client certificate and key: ") {
		t.Errorf("missing client certificate: %v", err)
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("a\nb"); got != `"a\nb"` {
		t.Errorf("Quote = %s", got)
	}
	if got := Quote(strings.Repeat("é", 70)); got != `"`+strings.Repeat("é", 60)+`"...` {
		t.Errorf("long value not shortened to 60 runes: %s", got)
	}
}

func TestParseDurationDays(t *testing.T) {
	if d, err := ParseDuration("7d"); err != nil || d.Std() != 7*24*time.Hour {
		t.Errorf("7d = %v, %v", d, err)
	}
	if _, err := ParseDuration("30"); err != ErrNoUnit {
		t.Errorf("bare number: %v, want ErrNoUnit", err)
	}
}

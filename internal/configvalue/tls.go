package configvalue

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// DefaultTLSMinVersion is the lowest TLS version accepted unless a section
// raises it.
const DefaultTLSMinVersion = "1.2"

// TLSServer is the TLS configuration of a listener. File paths are
// resolved against the config file's directory and checked to be readable
// at load time; their contents are not parsed here.
type TLSServer struct {
	// CertFile is the PEM certificate chain.
	CertFile string `yaml:"cert_file,required"`
	// KeyFile is the PEM private key.
	KeyFile string `yaml:"key_file,required"`
	// KeyPassphrase decrypts an encrypted KeyFile (key_passphrase_env /
	// key_passphrase_file).
	KeyPassphrase SecretRef `yaml:"key_passphrase"`
	// ClientCAFile, when set, enables mutual TLS: client certificates are
	// required and verified against these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowedClients, with ClientCAFile, accepts only client certificates
	// whose subject common name, or one of whose DNS or URI subject
	// alternative names, equals an entry exactly (no wildcards: a pattern
	// would admit certificates the CA issues later for other purposes).
	// Empty accepts every certificate the CAs verify.
	AllowedClients []string `yaml:"allowed_clients"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// SetDefaults gives a new TLS section its defaults before it is decoded.
func (t *TLSServer) SetDefaults() {
	t.MinVersion = DefaultTLSMinVersion
}

// Config builds the listener's TLS configuration: its certificate, the
// lowest version and, with ClientCAFile, mutual TLS (client certificates
// required and verified against those CAs, narrowed to AllowedClients by
// [AllowClients]). Every listener (MLLP sources, the admin endpoint, FHIR
// subscription endpoints) builds its configuration here. Errors name the
// setting, never a file's contents.
func (t *TLSServer) Config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: loading certificate and key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		conf.MinVersion = tls.VersionTLS13
	}
	if t.ClientCAFile != "" {
		pool, err := CertPool(t.ClientCAFile, "client CA file")
		if err != nil {
			return nil, err
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		if len(t.AllowedClients) > 0 {
			conf.VerifyConnection = AllowClients(t.AllowedClients)
		}
	}
	return conf, nil
}

// TLSClient is the TLS configuration of an outgoing connection. File
// paths are resolved against the config file's directory.
type TLSClient struct {
	// CAFile (PEM) holds the CAs that verify the server's certificate;
	// default the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile (PEM) are the client certificate and key for
	// mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry; default
	// the host of the address.
	ServerName string `yaml:"server_name"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// SetDefaults gives a new TLS section its defaults before it is decoded.
func (t *TLSClient) SetDefaults() {
	t.MinVersion = DefaultTLSMinVersion
}

// Config builds the TLS configuration of the outgoing connection: the CAs
// to trust (the system's without CAFile), the client certificate for
// mutual TLS, the server name and the lowest version. Errors name the
// setting, never a file's contents.
func (t *TLSClient) Config() (*tls.Config, error) {
	conf := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		conf.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" {
		pool, err := CertPool(t.CAFile, "CA file")
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: loading client certificate and key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// CertPool reads the PEM certificates of file (what names it in errors).
func CertPool(file, what string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: %s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", what)
	}
	return pool, nil
}

package fhirhttp

import (
	"fmt"
	"os"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// AuthConfig is how a FHIR client authenticates to the EHR's server: a
// static bearer token, or SMART Backend Services (a client id registered
// with the EHR, its token URL and the client's private key, PEM, signing
// RS384). The FHIR source and the FHIR write-back target both embed it in
// their config sections (`yaml:",inline"`), so the keys, their checks and
// the token source are declared once.
type AuthConfig struct {
	// Token (token_env / token_file) is a static bearer token.
	Token         configvalue.SecretRef `yaml:"token"`
	SMARTTokenURL string                `yaml:"smart_token_url"`
	SMARTClientID string                `yaml:"smart_client_id"`
	SMARTKeyFile  string                `yaml:"smart_key_file"`
}

// SMART reports whether any SMART Backend Services key is set.
func (a AuthConfig) SMART() bool {
	return a.SMARTTokenURL != "" || a.SMARTClientID != "" || a.SMARTKeyFile != ""
}

// Validate reports SMART settings given in part, a token given with them,
// and a key file that cannot be read. Keys are relative to the section
// that embeds a.
func (a AuthConfig) Validate(r configvalue.Reporter) {
	if a.SMART() && (a.SMARTTokenURL == "" || a.SMARTClientID == "" || a.SMARTKeyFile == "") {
		r.Add("", "SMART Backend Services needs smart_token_url, smart_client_id and smart_key_file")
	}
	if a.SMART() && a.Token.IsSet() {
		r.Add("", "give a static token or SMART Backend Services, not both")
	}
	r.Readable("smart_key_file", a.SMARTKeyFile)
}

// TokenSource builds the client's token source: [BackendServices] asking
// for scope ("" is BackendServices' default), a [StaticToken], or nil when
// neither is configured. It reads the key file or the token now, so a
// broken one fails at start; errors name the key, never a secret.
func (a AuthConfig) TokenSource(scope string) (TokenSource, error) {
	switch {
	case a.SMARTKeyFile != "":
		pemBytes, err := os.ReadFile(a.SMARTKeyFile)
		if err != nil {
			return nil, fmt.Errorf("smart_key_file: %w", err)
		}
		key, err := ParseRSAKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("smart_key_file: %w", err)
		}
		return &BackendServices{TokenURL: a.SMARTTokenURL, ClientID: a.SMARTClientID, Key: key, Scope: scope}, nil
	case a.Token.IsSet():
		tok, err := a.Token.Resolve()
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		return StaticToken(tok), nil
	}
	return nil, nil
}

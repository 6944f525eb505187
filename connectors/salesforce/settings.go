package salesforce

import (
	"fmt"
	"net/url"
	"os"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// Settings is a Salesforce org and its connected app as the config file's
// crm.salesforce section gives them: declared once, here (internal/config
// embeds it), with secrets by reference. [Settings.ClientConfig] turns it
// into the client's [Config].
type Settings struct {
	// LoginURL is the token endpoint's base: https://login.salesforce.com,
	// https://test.salesforce.com or the org's My Domain URL.
	LoginURL string `yaml:"login_url,required"`
	// Audience is the JWT bearer assertion's aud: https://login.salesforce.com
	// (production, the default), https://test.salesforce.com (a sandbox
	// org: the default when login_url is test.salesforce.com or a
	// *.sandbox.my.salesforce.com My Domain) or an Experience Cloud site
	// URL; never the My Domain URL, whatever login_url is
	// (https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_jwt_flow.htm).
	Audience string `yaml:"audience"`
	// APIVersion, default "62.0".
	APIVersion string `yaml:"api_version"`
	// ClientID is the connected app's consumer key.
	ClientID string `yaml:"client_id,required"`
	// ClientSecret (client_secret_env / client_secret_file) for the client
	// credentials and refresh token flows.
	ClientSecret configvalue.SecretRef `yaml:"client_secret"`
	// JWTUsername and JWTKeyFile select the JWT bearer flow: the key file
	// is the connected app certificate's private key (PEM, unencrypted).
	JWTUsername string `yaml:"jwt_username"`
	JWTKeyFile  string `yaml:"jwt_key_file"`
	// RefreshToken (refresh_token_env / refresh_token_file) selects the
	// refresh token flow.
	RefreshToken configvalue.SecretRef `yaml:"refresh_token"`
	// MaxConcurrent caps requests in flight; default 4.
	MaxConcurrent int `yaml:"max_concurrent"`
	// BudgetReserve is the share of the org's daily API allocation left
	// to others: ehrbridge pauses when the rest is used; default 0.1.
	BudgetReserve float64 `yaml:"budget_reserve"`
	// InsecurePlaintext allows an http:// LoginURL whose host is not
	// loopback (internal/config checks it with every other opt-out).
	InsecurePlaintext bool `yaml:"insecure_plaintext"`
}

// Validate reports the settings' problems; keys are relative to the
// crm.salesforce section.
func (s Settings) Validate(r configvalue.Reporter) {
	if u, err := url.Parse(s.LoginURL); s.LoginURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		r.Add("login_url", "must be an https URL like https://login.salesforce.com, got %s", r.Show("login_url", configvalue.Quote(s.LoginURL)))
	}
	if s.Audience != "" {
		if problem := AudienceProblem(s.Audience); problem != "" {
			r.Add("audience", "%s, got %s", problem, r.Show("audience", configvalue.Quote(s.Audience)))
		} else if s.JWTUsername == "" && s.JWTKeyFile == "" {
			r.Add("audience", "is the JWT bearer assertion's audience: set it with jwt_username and jwt_key_file, or remove it")
		}
	}
	flows := 0
	if s.JWTUsername != "" || s.JWTKeyFile != "" {
		flows++
		if s.JWTUsername == "" || s.JWTKeyFile == "" {
			r.Add("", "the JWT bearer flow needs both jwt_username and jwt_key_file")
		}
		r.Readable("jwt_key_file", s.JWTKeyFile)
	}
	if s.RefreshToken.IsSet() {
		flows++
	}
	if flows == 0 && !s.ClientSecret.IsSet() {
		r.Add("", "choose an OAuth flow: jwt_username + jwt_key_file, refresh_token_env/_file, or client_secret_env/_file alone for client credentials")
	}
	if flows > 1 {
		r.Add("", "choose one OAuth flow: JWT bearer or refresh token, not both")
	}
	if s.MaxConcurrent < 0 || s.MaxConcurrent > 25 {
		r.Add("max_concurrent", "must be between 1 and 25 (Salesforce allows 25 long-running requests per org)")
	}
	if s.BudgetReserve < 0 || s.BudgetReserve > 0.9 {
		r.Add("budget_reserve", "must be between 0 and 0.9")
	}
}

// ClientConfig is the client configuration the settings give: secrets
// resolved, the JWT key read. Errors name the key, never a secret.
func (s Settings) ClientConfig() (Config, error) {
	c := Config{LoginURL: s.LoginURL, Audience: s.Audience, APIVersion: s.APIVersion, ClientID: s.ClientID,
		MaxConcurrent: s.MaxConcurrent, BudgetReserve: s.BudgetReserve}
	if s.ClientSecret.IsSet() {
		secret, err := s.ClientSecret.Resolve()
		if err != nil {
			return c, fmt.Errorf("client secret: %w", err)
		}
		c.ClientSecret = secret
	}
	switch {
	case s.JWTUsername != "":
		key, err := os.ReadFile(s.JWTKeyFile)
		if err != nil {
			return c, fmt.Errorf("jwt_key_file: %w", err)
		}
		c.Auth = Auth{JWTUsername: s.JWTUsername, JWTPrivateKey: key}
	case s.RefreshToken.IsSet():
		rt, err := s.RefreshToken.Resolve()
		if err != nil {
			return c, fmt.Errorf("refresh token: %w", err)
		}
		c.Auth = Auth{RefreshToken: rt}
	default:
		c.Auth = Auth{ClientCredentials: true}
	}
	return c, nil
}

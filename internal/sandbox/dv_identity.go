package sandbox

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// The Microsoft identity platform endpoints as azidentity's confidential
// client calls them: the tenant's OpenID configuration, and the v2.0
// token endpoint with the client credentials grant, authenticated by the
// app registration's secret or by a certificate (a signed JWT client
// assertion).

// aadError writes an identity platform error.
func aadError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": code, "error_description": desc, "error_codes": []int{aadsts},
		"timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z"), "trace_id": "00000000-0000-0000-0000-000000000000",
		"correlation_id": "00000000-0000-0000-0000-000000000000"})
}

// issuerBase is the authority as the client addressed it.
func issuerBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) openIDConfig(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if tenant != s.opts.TenantID {
		aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, "AADSTS90002: Tenant '"+safeText(tenant)+"' not found.")
		return
	}
	base := issuerBase(r) + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

// safeText keeps an echoed value short and printable.
func safeText(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// dvTokenGrant serves POST /{tenant}/oauth2/v2.0/token.
func (s *Server) dvTokenGrant(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("tenant") != s.opts.TenantID {
		aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, "AADSTS90002: Tenant not found.")
		return
	}
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "AADSTS900144: The request body must be application/x-www-form-urlencoded.")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type.")
		return
	}
	if f.Get("client_id") != s.opts.DataverseClientID {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, "AADSTS700016: Application not found in the directory.")
		return
	}
	// MSAL adds openid, offline_access and profile to the resource's scope.
	resources := 0
	for _, sc := range strings.Fields(f.Get("scope")) {
		switch {
		case strings.HasSuffix(sc, "/.default"):
			resources++
		case sc == "openid" || sc == "offline_access" || sc == "profile":
		default:
			resources = -100
		}
	}
	if resources != 1 {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, "AADSTS1002012: The scope must be a resource's /.default scope for the client credentials flow.")
		return
	}
	switch {
	case f.Get("client_secret") != "":
		if f.Get("client_secret") != s.opts.DataverseSecret {
			aadError(w, http.StatusUnauthorized, "invalid_client", 7000215, "AADSTS7000215: Invalid client secret provided.")
			return
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			aadError(w, http.StatusBadRequest, "invalid_request", 50027, "AADSTS50027: client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.")
			return
		}
		tokenURL := issuerBase(r) + r.URL.Path
		if err := s.verifyAssertion(f.Get("client_assertion"), tokenURL); err != nil {
			aadError(w, http.StatusUnauthorized, "invalid_client", 700027, "AADSTS700027: Client assertion failed signature validation: "+err.Error())
			return
		}
	default:
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000218, "AADSTS7000218: The request body must contain client_assertion or client_secret.")
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := "eyJ0eXAiOiJKV1Qi.sandbox." + base64.RawURLEncoding.EncodeToString(b[:])
	ttl := s.opts.TokenTTL
	s.mu.Lock()
	s.dvTokens[tok] = dvToken{client: f.Get("client_id"), expires: s.opts.Now().Add(ttl)}
	s.mu.Unlock()
	secs := int(ttl / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok})
}

// verifyAssertion checks a client assertion: RS256 or PS256, signed by
// the configured certificate's key (named by x5t or x5t#S256 when given),
// issued by and about the client, for this token endpoint, not expired.
func (s *Server) verifyAssertion(jwt, tokenURL string) error {
	cert := s.opts.DataverseCert
	if cert == nil {
		return errors.New("no certificate is registered for the app")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("the registered certificate's key is not RSA")
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("malformed JWT")
	}
	var hdr struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Aud any     `json:"aud"`
		Iss string  `json:"iss"`
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
		Nbf float64 `json:"nbf"`
	}
	for i, dst := range []any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil {
			return errors.New("malformed JWT")
		}
	}
	sha1Thumb, sha256Thumb := certThumbprints(cert)
	if hdr.X5t != "" && !sha1Thumb[hdr.X5t] || hdr.X5tS256 != "" && !sha256Thumb[hdr.X5tS256] {
		return errors.New("the assertion names another certificate (x5t)")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("malformed signature")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch hdr.Alg {
	case "RS256":
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	case "PS256":
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, nil)
	default:
		return errors.New("unsupported alg " + safeText(hdr.Alg))
	}
	if err != nil {
		return errors.New("bad signature")
	}
	if claims.Iss != s.opts.DataverseClientID || claims.Sub != s.opts.DataverseClientID {
		return errors.New("iss and sub must be the client id")
	}
	audOK := false
	switch a := claims.Aud.(type) {
	case string:
		audOK = strings.EqualFold(a, tokenURL)
	case []any:
		for _, x := range a {
			if xs, _ := x.(string); strings.EqualFold(xs, tokenURL) {
				audOK = true
			}
		}
	}
	if !audOK {
		return errors.New("aud must be the token endpoint")
	}
	now := float64(s.opts.Now().Unix())
	if claims.Exp < now-300 || claims.Nbf > now+300 {
		return errors.New("the assertion is expired or not yet valid")
	}
	return nil
}

// certThumbprints are a certificate's SHA-1 and SHA-256 thumbprints as
// x5t and x5t#S256 may carry them: base64url (RFC 7515) or, as MSAL
// writes them, standard base64 with padding.
func certThumbprints(cert *x509.Certificate) (sha1Thumb, sha256Thumb map[string]bool) {
	s1 := sha1.Sum(cert.Raw)
	s2 := sha256.Sum256(cert.Raw)
	enc := func(b []byte) map[string]bool {
		return map[string]bool{base64.RawURLEncoding.EncodeToString(b): true, base64.StdEncoding.EncodeToString(b): true}
	}
	return enc(s1[:]), enc(s2[:])
}

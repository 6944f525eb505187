package sandbox

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// session is an issued access token.
type session struct {
	user    string
	expires time.Time
}

// ParseCertificate reads the PEM certificate whose key signs JWT bearer
// assertions (the certificate uploaded to the connected app).
func ParseCertificate(pemBytes []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("sandbox: no PEM block in the JWT certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("sandbox: JWT certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("sandbox: the JWT certificate's key is not RSA")
	}
	return pub, nil
}

// oauthError writes an OAuth error as Salesforce does: HTTP 400 (401 for
// a bad client) with {"error","error_description"}.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// token serves POST /services/oauth2/token: client_credentials, password,
// refresh_token and the JWT bearer grant.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	clientOK := func() bool {
		return r.PostForm.Get("client_id") == s.opts.ClientID && r.PostForm.Get("client_secret") == s.opts.ClientSecret
	}
	user := ""
	switch grant := r.PostForm.Get("grant_type"); grant {
	case "client_credentials":
		if !clientOK() {
			oauthError(w, http.StatusBadRequest, "invalid_client", "invalid client credentials")
			return
		}
		user = s.opts.RunAsUser
	case "password":
		if r.PostForm.Get("client_id") != s.opts.ClientID {
			oauthError(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
			return
		}
		if !clientOK() {
			oauthError(w, http.StatusBadRequest, "invalid_client", "invalid client credentials")
			return
		}
		u := r.PostForm.Get("username")
		pw, known := s.opts.Users[u]
		if !known || pw != r.PostForm.Get("password") {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "authentication failure")
			return
		}
		user = u
	case "refresh_token":
		if r.PostForm.Get("client_id") != s.opts.ClientID {
			oauthError(w, http.StatusBadRequest, "invalid_client_id", "client identifier invalid")
			return
		}
		u, ok := s.opts.RefreshTokens[r.PostForm.Get("refresh_token")]
		if !ok {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "expired access/refresh token")
			return
		}
		user = u
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		u, err := s.checkAssertion(r.PostForm.Get("assertion"))
		if err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
			return
		}
		user = u
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
		return
	}
	tok := s.issue(user)
	now := s.opts.Now()
	resp := map[string]string{
		"access_token": tok,
		"instance_url": baseURL(r),
		"id":           baseURL(r) + "/id/00Dsandbox000001/005sandbox000001",
		"token_type":   "Bearer",
		"issued_at":    strconv.FormatInt(now.UnixMilli(), 10),
		"signature":    base64.StdEncoding.EncodeToString(sha256Sum(tok)),
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(resp)
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// issue makes an access token for user, valid for TokenTTL.
func (s *Server) issue(user string) string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	tok := "00Dsandbox!" + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.sessions[tok] = session{user: user, expires: s.opts.Now().Add(s.opts.TokenTTL)}
	s.mu.Unlock()
	return tok
}

// ExpireTokens ends every session, as a password reset or session timeout
// would: the next API call gets INVALID_SESSION_ID.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	s.sessions = map[string]session{}
	s.dvTokens = map[string]dvToken{}
	s.mu.Unlock()
}

// authorized checks the bearer token of an API request.
func (s *Server) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "OAuth ")
	}
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, known := s.sessions[tok]
	if !known {
		return false
	}
	if !s.opts.Now().Before(sess.expires) {
		delete(s.sessions, tok)
		return false
	}
	return true
}

// checkAssertion verifies a JWT bearer assertion: RS256 signed by the
// configured certificate's key, issued by the client id, for a known user,
// addressed to the login server of the org's kind, not expired. It returns
// the user.
func (s *Server) checkAssertion(assertion string) (string, error) {
	if s.opts.JWTKey == nil {
		return "", errors.New("the JWT bearer flow is not configured")
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return "", errors.New("invalid assertion")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "RS256" {
		return "", errors.New("invalid assertion")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", errors.New("invalid assertion")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.opts.JWTKey, crypto.SHA256, digest[:], sig); err != nil {
		return "", errors.New("invalid assertion signature")
	}
	var claims struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp int64           `json:"exp"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "", errors.New("invalid assertion")
	}
	if claims.Iss != s.opts.ClientID {
		return "", errors.New("client identifier invalid")
	}
	if _, known := s.opts.Users[claims.Sub]; !known {
		return "", errors.New("user hasn't approved this consumer")
	}
	login := "https://login.salesforce.com"
	if s.opts.SandboxOrg {
		login = "https://test.salesforce.com"
	}
	if !audienceMatches(claims.Aud, login, s.opts.LoginURLs) {
		return "", errors.New("audience is invalid")
	}
	if claims.Exp == 0 || !s.opts.Now().Before(time.Unix(claims.Exp, 0)) {
		return "", errors.New("expired authorization code")
	}
	return claims.Sub, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// audienceMatches accepts the login server's URL or a configured site
// URL, as a string or in a list.
func audienceMatches(raw json.RawMessage, self string, extra []string) bool {
	var auds []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		auds = []string{one}
	} else if json.Unmarshal(raw, &auds) != nil {
		return false
	}
	for _, a := range auds {
		a = strings.TrimSuffix(a, "/")
		if a == self {
			return true
		}
		for _, e := range extra {
			if a == strings.TrimSuffix(e, "/") {
				return true
			}
		}
	}
	return false
}

// baseURL is the server's own URL as the client reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

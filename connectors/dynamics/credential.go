package dynamics

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Auth says how to get tokens for Dataverse: exactly one of a client
// secret, a certificate, managed identity or workload identity.
type Auth struct {
	TenantID, ClientID string
	// ClientSecret of the app registration.
	ClientSecret string
	// CertPEM and KeyPEM: the app registration's certificate and its
	// private key (PEM; the key may follow the certificate in CertPEM).
	CertPEM, KeyPEM []byte
	// ManagedIdentity uses the Azure host's identity (ClientID selects a
	// user-assigned one).
	ManagedIdentity bool
	// WorkloadIdentity uses AZURE_TENANT_ID, AZURE_CLIENT_ID and
	// AZURE_FEDERATED_TOKEN_FILE (Kubernetes), unless TenantID/ClientID
	// are given.
	WorkloadIdentity bool
	// AuthorityHost is the identity platform; default
	// https://login.microsoftonline.com/. Another host (a sovereign cloud
	// given by URL, or the sandbox) turns instance discovery off.
	AuthorityHost string
	// HTTPClient carries the token requests (to trust the sandbox's
	// certificate); default the standard one.
	HTTPClient *http.Client
}

// NewCredential makes the azidentity credential an Auth describes.
func NewCredential(a Auth) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{}
	custom := false
	if a.AuthorityHost != "" {
		if !strings.HasPrefix(a.AuthorityHost, "https://") {
			return nil, errors.New("dynamics: the authority host must be https")
		}
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: strings.TrimSuffix(a.AuthorityHost, "/") + "/"}
		custom = !strings.HasPrefix(a.AuthorityHost, "https://login.microsoftonline.com")
	}
	if a.HTTPClient != nil {
		opts.Transport = a.HTTPClient
	}
	opts.Retry = policy.RetryOptions{MaxRetries: 2}
	n := 0
	for _, set := range []bool{a.ClientSecret != "", len(a.CertPEM) > 0, a.ManagedIdentity, a.WorkloadIdentity} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("dynamics: give exactly one of a client secret, a certificate, managed identity or workload identity")
	}
	switch {
	case a.ClientSecret != "":
		return azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, a.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: custom})
	case len(a.CertPEM) > 0:
		pemData := append(append([]byte(nil), a.CertPEM...), '\n')
		pemData = append(pemData, a.KeyPEM...)
		certs, key, err := azidentity.ParseCertificates(pemData, nil)
		if err != nil {
			return nil, fmt.Errorf("dynamics: the certificate or its key cannot be read: %w", err)
		}
		return azidentity.NewClientCertificateCredential(a.TenantID, a.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: custom})
	case a.ManagedIdentity:
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: opts}
		if a.ClientID != "" {
			mo.ID = azidentity.ClientID(a.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(mo)
	default:
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientOptions: opts,
			TenantID: a.TenantID, ClientID: a.ClientID, DisableInstanceDiscovery: custom})
	}
}

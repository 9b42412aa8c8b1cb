package keyfactor

import (
	"time"
)

// CertificateRecord is Keyfactor's certificate (GET /Certificates/{id}
// and the rows of GET /Certificates), field for field. Fields certflow has
// no notion of (principals, certificate stores, key archives) keep
// Keyfactor's names with null or empty values, so clients decode them.
type CertificateRecord struct {
	Id                       int64                `json:"Id"`
	Thumbprint               string               `json:"Thumbprint"`
	SerialNumber             string               `json:"SerialNumber"`
	IssuedDN                 string               `json:"IssuedDN"`
	IssuedCN                 string               `json:"IssuedCN"`
	ImportDate               time.Time            `json:"ImportDate"`
	NotBefore                time.Time            `json:"NotBefore"`
	NotAfter                 time.Time            `json:"NotAfter"`
	IssuerDN                 string               `json:"IssuerDN"`
	PrincipalId              *int64               `json:"PrincipalId"`
	TemplateId               int                  `json:"TemplateId"`
	CertState                int                  `json:"CertState"`
	KeySizeInBits            int                  `json:"KeySizeInBits"`
	KeyType                  int                  `json:"KeyType"`
	RequesterId              int                  `json:"RequesterId"`
	IssuedOU                 *string              `json:"IssuedOU"`
	IssuedEmail              *string              `json:"IssuedEmail"`
	KeyUsage                 int                  `json:"KeyUsage"`
	SigningAlgorithm         string               `json:"SigningAlgorithm"`
	CertStateString          string               `json:"CertStateString"`
	KeyTypeString            string               `json:"KeyTypeString"`
	RevocationEffDate        *time.Time           `json:"RevocationEffDate"`
	RevocationReason         *int                 `json:"RevocationReason"`
	RevocationComment        *string              `json:"RevocationComment"`
	CertificateAuthorityId   int                  `json:"CertificateAuthorityId"`
	CertificateAuthorityName string               `json:"CertificateAuthorityName"`
	TemplateName             string               `json:"TemplateName"`
	ArchivedKey              bool                 `json:"ArchivedKey"`
	HasPrivateKey            bool                 `json:"HasPrivateKey"`
	PrincipalName            *string              `json:"PrincipalName"`
	CertRequestId            int64                `json:"CertRequestId"`
	RequesterName            string               `json:"RequesterName"`
	ContentBytes             string               `json:"ContentBytes"`
	ExtendedKeyUsages        []ExtendedKeyUsage   `json:"ExtendedKeyUsages"`
	SubjectAltNameElements   []SubjectAltName     `json:"SubjectAltNameElements"`
	CRLDistributionPoints    []CRLDistributionPnt `json:"CRLDistributionPoints"`
	LocationsCount           []any                `json:"LocationsCount"`
	SSLLocations             []any                `json:"SSLLocations"`
	Locations                []any                `json:"Locations"`
	Metadata                 map[string]string    `json:"Metadata"`
	CertificateKeyId         int                  `json:"CertificateKeyId"`
	KeyRecoverable           bool                 `json:"KeyRecoverable"`
	Curve                    *string              `json:"Curve"`
	OwnerRoleId              *int64               `json:"OwnerRoleId"`
	OwnerRoleName            *string              `json:"OwnerRoleName"`
}

// SubjectAltName is one of a certificate's SANs; Type is the RFC 5280
// GeneralName tag (1 email, 2 DNS, 6 URI, 7 IP).
type SubjectAltName struct {
	Id        int    `json:"Id"`
	Value     string `json:"Value"`
	Type      int    `json:"Type"`
	ValueHash string `json:"ValueHash"`
}

// CRLDistributionPnt is one of a certificate's CRL distribution points.
type CRLDistributionPnt struct {
	Id      int    `json:"Id"`
	Url     string `json:"Url"`
	UrlHash string `json:"UrlHash"`
}

// CertificateDownloadRequest is the body of POST /Certificates/Download.
type CertificateDownloadRequest struct {
	CertID       int64  `json:"CertID"`
	SerialNumber string `json:"SerialNumber"`
	IssuerDN     string `json:"IssuerDN"`
	Thumbprint   string `json:"Thumbprint"`
	IncludeChain bool   `json:"IncludeChain"`
	ChainOrder   string `json:"ChainOrder"`
}

// CertificateDownloadResponse is Keyfactor's answer: the certificate (and
// chain) in the requested format, base64.
type CertificateDownloadResponse struct {
	Content string `json:"Content"`
}

// CertificateRecoveryRequest is the body of POST /Certificates/Recover,
// with Keyfactor's field names: the certificate by CertID, Thumbprint, or
// SerialNumber and IssuerDN; the archive's Password; IncludeChain.
type CertificateRecoveryRequest struct {
	CertID       int64  `json:"CertID"`
	Password     string `json:"Password"`
	SerialNumber string `json:"SerialNumber"`
	IssuerDN     string `json:"IssuerDN"`
	Thumbprint   string `json:"Thumbprint"`
	IncludeChain bool   `json:"IncludeChain"`
	ChainOrder   string `json:"ChainOrder"`
}

// RecoveryResponse is Keyfactor's answer: the base64 PKCS#12 and a file
// name for it.
type RecoveryResponse struct {
	PFX      string `json:"PFX"`
	FileName string `json:"FileName"`
}

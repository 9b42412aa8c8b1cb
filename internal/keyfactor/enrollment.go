package keyfactor

// EnrollmentCSRRequest is the body of POST /Enrollment/CSR, with
// Keyfactor's field names. Unknown fields are ignored, as Keyfactor does, so
// that newer clients keep working.
type EnrollmentCSRRequest struct {
	CSR                        string              `json:"CSR"`
	PrivateKey                 string              `json:"PrivateKey"`
	CertificateAuthority       string              `json:"CertificateAuthority"`
	IncludeChain               *bool               `json:"IncludeChain"`
	IncludeSubjectHeader       *bool               `json:"IncludeSubjectHeader"`
	Timestamp                  string              `json:"Timestamp"`
	OwnerRoleId                *int64              `json:"OwnerRoleId"`
	OwnerRoleName              string              `json:"OwnerRoleName"`
	Template                   string              `json:"Template"`
	Metadata                   map[string]any      `json:"Metadata"`
	SANs                       map[string][]string `json:"SANs"`
	AdditionalEnrollmentFields map[string]any      `json:"AdditionalEnrollmentFields"`
	CallbackUrl                string              `json:"CallbackUrl"`
}

// EnrollmentPFXRequest is the body of POST /Enrollment/PFX with Keyfactor's
// field names: the fields CSR enrollment shares (CSR and PrivateKey must
// be absent), the subject and key to generate, and the archive's Password
// and CustomFriendlyName.
type EnrollmentPFXRequest struct {
	EnrollmentCSRRequest
	CustomFriendlyName          string `json:"CustomFriendlyName"`
	Password                    string `json:"Password"`
	PopulateMissingValuesFromAD bool   `json:"PopulateMissingValuesFromAD"`
	Subject                     string `json:"Subject"`
	RenewalCertificateId        int64  `json:"RenewalCertificateId"`
	KeyType                     string `json:"KeyType"`
	KeyLength                   int    `json:"KeyLength"`
	Curve                       string `json:"Curve"`
	ChainOrder                  string `json:"ChainOrder"`
}

// PFXEnrollmentResponse is Keyfactor's answer to POST /Enrollment/PFX.
type PFXEnrollmentResponse struct {
	CertificateInformation PFXCertificateInformation `json:"CertificateInformation"`
	Metadata               map[string]string         `json:"Metadata"`
}

// PFXCertificateInformation is Keyfactor's (its PKCS#12 certificate
// response), field for field: note KeyfactorId, not the CSR answer's
// KeyfactorID. Password is null: the archive is protected by the caller's
// own. Certificates (certflow) is the chain in PEM, as for CSR enrollment.
type PFXCertificateInformation struct {
	SerialNumber              string         `json:"SerialNumber"`
	IssuerDN                  string         `json:"IssuerDN"`
	Thumbprint                string         `json:"Thumbprint"`
	KeyfactorId               int64          `json:"KeyfactorId"`
	KeyfactorRequestId        int64          `json:"KeyfactorRequestId"`
	Pkcs12Blob                string         `json:"Pkcs12Blob"`
	Password                  *string        `json:"Password"`
	WorkflowInstanceId        string         `json:"WorkflowInstanceId"`
	WorkflowReferenceId       int64          `json:"WorkflowReferenceId"`
	StoreIdsInvalidForRenewal []string       `json:"StoreIdsInvalidForRenewal"`
	RequestDisposition        string         `json:"RequestDisposition"`
	DispositionMessage        string         `json:"DispositionMessage"`
	EnrollmentContext         map[string]any `json:"EnrollmentContext"`
	Certificates              []string       `json:"Certificates"`
}

// RenewalRequest is the body of POST /Enrollment/Renew, with Keyfactor's
// field names, plus certflow's CSR, IncludeChain and CallbackUrl.
type RenewalRequest struct {
	CertificateId        *int64 `json:"CertificateId"`
	Thumbprint           string `json:"Thumbprint"`
	CertificateAuthority string `json:"CertificateAuthority"`
	Template             string `json:"Template"`
	Timestamp            string `json:"Timestamp"`
	// CSR (certflow) renews with a new key. Without it the certificate's
	// retained private key is used again.
	CSR          string `json:"CSR"`
	IncludeChain *bool  `json:"IncludeChain"`
	CallbackUrl  string `json:"CallbackUrl"`
}

// RenewalResponse is Keyfactor's answer to POST /Enrollment/Renew, plus
// certflow's workflow ids and the certificates (as enrollment answers them).
type RenewalResponse struct {
	KeyfactorId         int64    `json:"KeyfactorId"`
	KeyfactorRequestId  int64    `json:"KeyfactorRequestId"`
	Thumbprint          string   `json:"Thumbprint"`
	SerialNumber        string   `json:"SerialNumber"`
	IssuerDN            string   `json:"IssuerDN"`
	RequestDisposition  string   `json:"RequestDisposition"`
	DispositionMessage  string   `json:"DispositionMessage"`
	Password            *string  `json:"Password"`
	WorkflowInstanceId  string   `json:"WorkflowInstanceId"`
	WorkflowReferenceId int64    `json:"WorkflowReferenceId"`
	Certificates        []string `json:"Certificates"`
	// RenewedCertificateId is the certificate this request renews.
	RenewedCertificateId int64 `json:"RenewedCertificateId"`
}

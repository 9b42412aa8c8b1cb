package keyfactor

// Template is Keyfactor's template object (GET /Templates).
type Template struct {
	Id               int    `json:"Id"`
	CommonName       string `json:"CommonName"`
	TemplateName     string `json:"TemplateName"`
	Oid              string `json:"Oid,omitempty"`
	KeySize          string `json:"KeySize"`
	KeyType          string `json:"KeyType"`
	ForestRoot       string `json:"ForestRoot,omitempty"`
	FriendlyName     string `json:"FriendlyName"`
	DisplayName      string `json:"DisplayName"`
	KeyRetention     string `json:"KeyRetention"`
	KeyRetentionDays int    `json:"KeyRetentionDays"`
	KeyArchival      bool   `json:"KeyArchival"`
	// EnrollmentFields and MetadataFields are the template's custom
	// request attributes and metadata overrides.
	EnrollmentFields       []TemplateEnrollmentField `json:"EnrollmentFields"`
	MetadataFields         []TemplateMetadataField   `json:"MetadataFields"`
	AllowedEnrollmentTypes int                       `json:"AllowedEnrollmentTypes"`
	TemplateRegexes        []TemplateRegex           `json:"TemplateRegexes"`
	UseAllowedRequesters   bool                      `json:"UseAllowedRequesters"`
	AllowedRequesters      []string                  `json:"AllowedRequesters"`
	RFCEnforcement         bool                      `json:"RFCEnforcement"`
	RequiresApproval       bool                      `json:"RequiresApproval"`
	// KeyUsage is the Windows bit mask Keyfactor uses (digitalSignature
	// 128, nonRepudiation 64, keyEncipherment 32, dataEncipherment 16,
	// keyAgreement 8).
	KeyUsage          int                `json:"KeyUsage"`
	ExtendedKeyUsages []ExtendedKeyUsage `json:"ExtendedKeyUsages"`
	Curve             string             `json:"Curve,omitempty"`
	TemplatePolicy    TemplatePolicy     `json:"TemplatePolicy"`
}

// TemplateEnrollmentField is a template's custom request attribute.
type TemplateEnrollmentField struct {
	Id      int      `json:"Id"`
	Name    string   `json:"Name"`
	Options []string `json:"Options"`
	// DataType is 1 for String, 2 for MultipleChoice.
	DataType int `json:"DataType"`
	// Required *(certflow)*: the field must be given at enrollment.
	Required bool `json:"Required"`
}

// TemplateMetadataField is a template's override of a metadata field.
type TemplateMetadataField struct {
	Id           int    `json:"Id"`
	MetadataId   int    `json:"MetadataId"`
	DefaultValue string `json:"DefaultValue"`
	Validation   string `json:"Validation"`
	// Enrollment is 0 Optional, 1 Required, 2 Hidden.
	Enrollment int    `json:"Enrollment"`
	Message    string `json:"Message"`
	Options    string `json:"Options"`
	// AllowAPI: certflow applies the override to API enrollments (the
	// only kind it has).
	AllowAPI bool `json:"AllowAPI"`
}

// TemplateRegex is a subject-part pattern; certflow's templates have none
// (validate steps carry such rules).
type TemplateRegex struct {
	TemplateId  int    `json:"TemplateId"`
	SubjectPart string `json:"SubjectPart"`
	RegEx       string `json:"RegEx"`
	Error       string `json:"Error"`
}

// ExtendedKeyUsage is an EKU with its OID.
type ExtendedKeyUsage struct {
	Id          int    `json:"Id"`
	Oid         string `json:"Oid"`
	DisplayName string `json:"DisplayName"`
}

// TemplatePolicy is the key and name policy a template enforces.
type TemplatePolicy struct {
	TemplateId int `json:"TemplateId"`
	// RSAValidKeySizes in bits; ECCValidCurves as curve OIDs.
	RSAValidKeySizes []int    `json:"RSAValidKeySizes"`
	ECCValidCurves   []string `json:"ECCValidCurves"`
	AllowKeyReuse    bool     `json:"AllowKeyReuse"`
	AllowWildcards   bool     `json:"AllowWildcards"`
	RFCEnforcement   bool     `json:"RFCEnforcement"`
	// CertificateOwnerRole: 1 when the template requires an owner role,
	// else 0 (certflow's numbering; Keyfactor does not publish its own).
	CertificateOwnerRole int `json:"CertificateOwnerRole"`
	// AllowEd25519 *(certflow)*: Ed25519 keys are accepted.
	AllowEd25519 bool `json:"AllowEd25519"`
}

// CSRContext is Keyfactor's CSR enrollment context
// (GET /Enrollment/CSR/Context/My): the templates the caller may enroll
// with, and the standalone CAs.
type CSRContext struct {
	Templates     []ContextTemplate `json:"Templates"`
	StandaloneCAs []ContextCA       `json:"StandaloneCAs"`
}

// ContextTemplate is one template of the CSR enrollment context.
type ContextTemplate struct {
	Id                      int                       `json:"Id"`
	Name                    string                    `json:"Name"`
	DisplayName             string                    `json:"DisplayName"`
	Forest                  string                    `json:"Forest,omitempty"`
	KeySize                 string                    `json:"KeySize"`
	KeyType                 string                    `json:"KeyType"`
	RequiresApproval        bool                      `json:"RequiresApproval"`
	RFCEnforcement          bool                      `json:"RFCEnforcement"`
	KeyRetention            string                    `json:"KeyRetention"`
	KeyRetentionDays        int                       `json:"KeyRetentionDays"`
	AllowedEnrollmentTypes  int                       `json:"AllowedEnrollmentTypes"`
	CAs                     []ContextCA               `json:"CAs"`
	EnrollmentFields        []TemplateEnrollmentField `json:"EnrollmentFields"`
	MetadataFields          []TemplateMetadataField   `json:"MetadataFields"`
	Regexes                 []TemplateRegex           `json:"Regexes"`
	ExtendedKeyUsages       []ExtendedKeyUsage        `json:"ExtendedKeyUsages"`
	Curve                   string                    `json:"Curve,omitempty"`
	TemplateDefaultSettings []TemplateDefault         `json:"TemplateDefaultSettings"`
	TemplatePolicy          TemplatePolicy            `json:"TemplatePolicy"`
}

// TemplateDefault is a default subject part; certflow's templates have none.
type TemplateDefault struct {
	SubjectPart string `json:"SubjectPart"`
	Value       string `json:"Value"`
}

// ContextCA is a CA as the enrollment context names it: the name to give
// as CertificateAuthority.
type ContextCA struct {
	Name            string `json:"Name"`
	RFCEnforcement  bool   `json:"RFCEnforcement"`
	SubscriberTerms bool   `json:"SubscriberTerms"`
}

// CertificateAuthority is Keyfactor's CA object (GET /CertificateAuthority).
type CertificateAuthority struct {
	Id                     int      `json:"Id"`
	LogicalName            string   `json:"LogicalName"`
	HostName               string   `json:"HostName"`
	Delegate               bool     `json:"Delegate"`
	DelegateEnrollment     bool     `json:"DelegateEnrollment"`
	ForestRoot             string   `json:"ForestRoot,omitempty"`
	Remote                 bool     `json:"Remote"`
	Standalone             bool     `json:"Standalone"`
	MonitorThresholds      bool     `json:"MonitorThresholds"`
	IssuanceMax            int      `json:"IssuanceMax"`
	IssuanceMin            int      `json:"IssuanceMin"`
	DenialMax              int      `json:"DenialMax"`
	FailureMax             int      `json:"FailureMax"`
	RFCEnforcement         bool     `json:"RFCEnforcement"`
	Properties             string   `json:"Properties"`
	AllowedEnrollmentTypes int      `json:"AllowedEnrollmentTypes"`
	KeyRetention           int      `json:"KeyRetention"`
	KeyRetentionDays       int      `json:"KeyRetentionDays"`
	ExplicitCredentials    bool     `json:"ExplicitCredentials"`
	SubscriberTerms        bool     `json:"SubscriberTerms"`
	UseAllowedRequesters   bool     `json:"UseAllowedRequesters"`
	AllowedRequesters      []string `json:"AllowedRequesters"`
	EnforceUniqueDN        bool     `json:"EnforceUniqueDN"`
	// Certificates *(certflow)*: the CA's chain in PEM, issuing CA first,
	// then the root; absent until the CA has been created (by the first
	// worker to start).
	Certificates []string `json:"Certificates,omitempty"`
}

// MetadataField is Keyfactor's metadata field object (GET /MetadataFields).
type MetadataField struct {
	Id          int    `json:"Id"`
	Name        string `json:"Name"`
	Description string `json:"Description"`
	// DataType is 1 String, 2 Integer, 3 Date, 4 Boolean, 5
	// MultipleChoice, 6 BigText, 7 Email.
	DataType   int    `json:"DataType"`
	Hint       string `json:"Hint"`
	Validation string `json:"Validation"`
	// Enrollment is 0 Optional, 1 Required, 2 Hidden.
	Enrollment int    `json:"Enrollment"`
	Message    string `json:"Message"`
	// Options is Keyfactor's comma-separated list (MultipleChoice).
	Options      string `json:"Options"`
	DefaultValue string `json:"DefaultValue"`
	DisplayOrder int    `json:"DisplayOrder"`
}

// SecurityRole is Keyfactor's security role object (GET /Security/Roles).
type SecurityRole struct {
	Id          int64    `json:"Id"`
	Name        string   `json:"Name"`
	Description string   `json:"Description"`
	Enabled     bool     `json:"Enabled"`
	Immutable   bool     `json:"Immutable"`
	Valid       bool     `json:"Valid"`
	Private     bool     `json:"Private"`
	Identities  []any    `json:"Identities"`
	Permissions []string `json:"Permissions"`
}

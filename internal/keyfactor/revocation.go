package keyfactor

// RevokeCertificateRequest is the body of POST /Certificates/Revoke.
type RevokeCertificateRequest struct {
	CertificateIds []int64 `json:"CertificateIds"`
	Reason         *int    `json:"Reason"`
	Comment        string  `json:"Comment"`
	EffectiveDate  string  `json:"EffectiveDate"`
	CollectionId   *int64  `json:"CollectionId"`
}

// RevocationResponse is Keyfactor's answer to POST /Certificates/Revoke:
// the ids revoked, and those whose revocation waits (for approval, or
// still runs). Refused lists *(certflow)* the revocations the workflow
// denied or that failed.
type RevocationResponse struct {
	RevokedIds     []int64               `json:"RevokedIds"`
	SuspendedCerts []SuspendedRevocation `json:"SuspendedCerts"`
	Refused        []SuspendedRevocation `json:"Refused"`
}

// SuspendedRevocation is Keyfactor's entry for a revocation that did not
// complete at once, with certflow's request id and disposition beside.
type SuspendedRevocation struct {
	CertId             int64  `json:"CertId"`
	WorkflowId         string `json:"WorkflowId"`
	Message            string `json:"Message"`
	KeyfactorRequestId int64  `json:"KeyfactorRequestId"`
	RequestDisposition string `json:"RequestDisposition"`
}

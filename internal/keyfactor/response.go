package keyfactor

import (
	"fmt"
	"slices"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// EnrollmentResponse is Keyfactor's answer to POST /Enrollment/CSR.
type EnrollmentResponse struct {
	CertificateInformation CertificateInformation `json:"CertificateInformation"`
	Metadata               map[string]string      `json:"Metadata"`
}

// CertificateInformation is Keyfactor's, field for field; the ids are
// integers because Keyfactor's clients parse them as such.
type CertificateInformation struct {
	SerialNumber        string         `json:"SerialNumber"`
	IssuerDN            string         `json:"IssuerDN"`
	Thumbprint          string         `json:"Thumbprint"`
	KeyfactorID         int64          `json:"KeyfactorID"`
	KeyfactorRequestId  int64          `json:"KeyfactorRequestId"`
	Certificates        []string       `json:"Certificates"`
	RequestDisposition  string         `json:"RequestDisposition"`
	DispositionMessage  string         `json:"DispositionMessage"`
	EnrollmentContext   map[string]any `json:"EnrollmentContext"`
	WorkflowInstanceId  string         `json:"WorkflowInstanceId"`
	WorkflowReferenceId int64          `json:"WorkflowReferenceId"`
	// Pkcs12Blob is a PFX request's archive, on GET /Enrollment/Requests/{id}
	// to its requester once issued.
	Pkcs12Blob string `json:"Pkcs12Blob,omitempty"`
}

// RequestStatus is certflow's answer to GET /Enrollment/Requests/{id}: the
// enrollment response plus the request's history.
type RequestStatus struct {
	EnrollmentResponse
	Request   RequestSummary          `json:"Request"`
	Timeline  []workflow.StepRecord   `json:"Timeline"`
	Callbacks []store.CallbackAttempt `json:"Callbacks"`
	// Decisions are the approval decisions, timeouts and stops, in order.
	Decisions []workflow.Decision `json:"Decisions"`
	// Wait is what a PENDING request waits for.
	Wait *workflow.Wait `json:"Wait,omitempty"`
}

// RequestSummary describes the request itself.
type RequestSummary struct {
	Id                   int64     `json:"Id"`
	Submitted            time.Time `json:"Submitted"`
	Updated              time.Time `json:"Updated"`
	Requester            string    `json:"Requester"`
	Template             string    `json:"Template,omitempty"`
	CertificateAuthority string    `json:"CertificateAuthority,omitempty"`
	Format               string    `json:"Format"`
	Definition           string    `json:"Definition,omitempty"`
	DefinitionVersion    string    `json:"DefinitionVersion,omitempty"`
	InstanceStatus       string    `json:"InstanceStatus,omitempty"`
	CurrentStep          string    `json:"CurrentStep,omitempty"`
	// CallbackUrl is shown as redact.URL renders it: its query may hold
	// the receiver's token, and approvers read this too.
	CallbackUrl string `json:"CallbackUrl,omitempty"`
	// HasPrivateKey: certflow retains the certificate's private key.
	HasPrivateKey bool `json:"HasPrivateKey"`
}

// NewEnrollmentResponse renders a request (and its certificate, when
// issued) in Keyfactor's shape, for a viewer holding the roles viewer (nil:
// an outside receiver, such as a callback). format overrides the request's
// own certificate format when not empty.
func NewEnrollmentResponse(r *store.Request, cert *store.Certificate, format pki.Format, viewer []string) (*EnrollmentResponse, error) {
	if format == "" {
		format = pki.Format(r.Input.Format)
	}
	info := CertificateInformation{
		KeyfactorRequestId:  r.ID,
		RequestDisposition:  string(r.Disposition),
		DispositionMessage:  DispositionMessage(r, viewer),
		EnrollmentContext:   map[string]any{},
		WorkflowInstanceId:  r.Instance.ID,
		WorkflowReferenceId: r.ID,
		Certificates:        []string{},
	}
	md := RequestMetadata(r)
	if cert != nil {
		chain := cert.Chain[:1]
		if r.Input.IncludeChain {
			chain = cert.Chain
		}
		certs, err := pki.EncodeChain(chain, format, r.Input.IncludeSubjectHeader)
		if err != nil {
			return nil, err
		}
		info.Certificates = certs
		info.SerialNumber, info.IssuerDN, info.Thumbprint = cert.SerialNumber, cert.IssuerDN, cert.Thumbprint
		info.KeyfactorID = cert.ID
	}
	return &EnrollmentResponse{CertificateInformation: info, Metadata: md}, nil
}

// RequestMetadata is a request's certificate metadata (see
// store.Request.Metadata), never nil.
func RequestMetadata(r *store.Request) map[string]string {
	if md := r.Metadata(); md != nil {
		return md
	}
	return map[string]string{}
}

// SeesDetails reports whether a viewer holding the roles viewer may read
// internal failure details (step errors can carry internal host names and
// addresses): approvers and administrators.
func SeesDetails(viewer []string) bool {
	return slices.Contains(viewer, config.RoleAdmin) || slices.Contains(viewer, config.RoleApprover)
}

// DispositionMessage is the request's message for a viewer holding the
// roles viewer, except that the reason of a failure is kept from
// requesters and callback receivers: it is internal.
func DispositionMessage(r *store.Request, viewer []string) string {
	if r.Disposition != store.Failed || SeesDetails(viewer) {
		return r.Message
	}
	return fmt.Sprintf("request %d failed; an administrator can see why in certflow's log and the request's timeline", r.ID)
}

// NewRequestStatus renders GET /Enrollment/Requests/{id}'s answer for a
// viewer holding the roles viewer: the enrollment response and the
// request's history, step errors shown only to those who see details.
func NewRequestStatus(r *store.Request, cert *store.Certificate, format pki.Format, viewer []string) (*RequestStatus, error) {
	er, err := NewEnrollmentResponse(r, cert, format, viewer)
	if err != nil {
		return nil, err
	}
	st := &RequestStatus{
		EnrollmentResponse: *er,
		Request: RequestSummary{
			Id: r.ID, Submitted: r.Submitted, Updated: r.Updated, Requester: r.Requester.Name,
			Template: r.Input.Template, CertificateAuthority: r.Input.CertificateAuthority,
			Format: r.Input.Format, Definition: r.Instance.Definition, DefinitionVersion: r.Instance.Version,
			InstanceStatus: string(r.Instance.Status), CallbackUrl: redact.URL(r.Input.CallbackUrl),
			HasPrivateKey: r.Input.HasPrivateKey,
		},
		Timeline:  r.Instance.History,
		Callbacks: r.Callbacks,
		Decisions: r.Instance.Decisions,
		Wait:      r.Instance.Wait,
	}
	if st.Decisions == nil {
		st.Decisions = []workflow.Decision{}
	}
	if st.Timeline == nil {
		st.Timeline = []workflow.StepRecord{}
	}
	if !SeesDetails(viewer) {
		// Requesters see each step's outcome, and a denial's reason, but
		// not the text of errors.
		st.Timeline = slices.Clone(st.Timeline)
		for i := range st.Timeline {
			if st.Timeline[i].Outcome != workflow.OutcomeDenied {
				st.Timeline[i].Message = ""
			}
		}
	}
	if st.Callbacks == nil {
		st.Callbacks = []store.CallbackAttempt{}
	}
	return st, nil
}

// NewPFXEnrollmentResponse is a PFX enrollment's answer made of its
// enrollment response; the caller adds the Pkcs12Blob once issued.
func NewPFXEnrollmentResponse(er *EnrollmentResponse) *PFXEnrollmentResponse {
	ci := er.CertificateInformation
	return &PFXEnrollmentResponse{Metadata: er.Metadata, CertificateInformation: PFXCertificateInformation{
		SerialNumber: ci.SerialNumber, IssuerDN: ci.IssuerDN, Thumbprint: ci.Thumbprint, KeyfactorId: ci.KeyfactorID,
		KeyfactorRequestId: ci.KeyfactorRequestId, WorkflowInstanceId: ci.WorkflowInstanceId, WorkflowReferenceId: ci.WorkflowReferenceId,
		StoreIdsInvalidForRenewal: []string{}, RequestDisposition: ci.RequestDisposition, DispositionMessage: ci.DispositionMessage,
		EnrollmentContext: ci.EnrollmentContext, Certificates: ci.Certificates,
	}}
}

// NewRenewalResponse is a renewal's answer made of its enrollment
// response; renewed is the id of the certificate it renews.
func NewRenewalResponse(er *EnrollmentResponse, renewed int64) *RenewalResponse {
	ci := er.CertificateInformation
	return &RenewalResponse{
		KeyfactorId: ci.KeyfactorID, KeyfactorRequestId: ci.KeyfactorRequestId,
		Thumbprint: ci.Thumbprint, SerialNumber: ci.SerialNumber, IssuerDN: ci.IssuerDN,
		RequestDisposition: ci.RequestDisposition, DispositionMessage: ci.DispositionMessage,
		WorkflowInstanceId: ci.WorkflowInstanceId, WorkflowReferenceId: ci.WorkflowReferenceId,
		Certificates: ci.Certificates, RenewedCertificateId: renewed,
	}
}

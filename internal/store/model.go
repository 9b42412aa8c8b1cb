package store

import (
	"maps"
	"time"

	"github.com/certflow/certflow/workflow"
)

// Disposition is Keyfactor's RequestDisposition.
type Disposition string

const (
	Queued    Disposition = "QUEUED"
	Running   Disposition = "RUNNING"
	Pending   Disposition = "PENDING" // waiting for approval
	Issued    Disposition = "ISSUED"
	Denied    Disposition = "DENIED"
	Failed    Disposition = "FAILED"
	Cancelled Disposition = "CANCELLED"
	// Revoked ends a revocation request whose workflow revoked the
	// certificate (a refused one ends DENIED).
	Revoked Disposition = "REVOKED"
)

// Settled reports whether the workflow has come to rest: a waiting client
// can be answered.
func (d Disposition) Settled() bool { return d != Queued && d != Running }

// Answered reports whether a client waiting for the request gets its
// answer now: the workflow came to rest (Settled), and not only to wait
// for its certificate authority, which answers soon by itself.
func (r *Request) Answered() bool {
	return r.Disposition.Settled() && !(r.Disposition == Pending && r.Instance.Wait.ForAuthority())
}

// Final reports whether nothing more will happen to the request.
func (d Disposition) Final() bool { return d.Settled() && d != Pending }

// Request is the stored record of one enrollment request.
type Request struct {
	ID int64 `json:"ID"`
	// version is the record's compare-and-set version.
	version int64
	// cert is the issued certificate as stored (certcodec.go), as Get
	// found it. Read only: it may share the memory of the string Redis
	// answered (bytesOf).
	cert []byte
	// issuers is the chain above cert's leaf when cert refers to a stored
	// chain, resolved by whoever loaded the record (resolveChains).
	issuers [][]byte
	// loaded is the disposition as read (or created): Save derives the
	// open and pending indexes' changes from it.
	loaded Disposition
	// indexedMeta is the metadata as read (then as Save wrote it): what
	// the inventory's index holds for the request's certificate, if it
	// has one indexed. Save changes the index by the difference.
	indexedMeta map[string]string
	Disposition Disposition        `json:"Disposition"`
	Message     string             `json:"Message,omitempty"`
	Submitted   time.Time          `json:"Submitted"`
	Updated     time.Time          `json:"Updated"`
	Trigger     string             `json:"Trigger"`
	Input       workflow.Request   `json:"Input"`
	Requester   workflow.Requester `json:"Requester"`
	// Subject and CommonName are the CSR's, for listings that do not
	// load the CSR.
	Subject    string `json:"Subject,omitempty"`
	CommonName string `json:"CommonName,omitempty"`
	// CSR is the DER of the request's CSR. It is stored once, beside the
	// record (it never changes), so checkpoints do not re-encode it.
	CSR []byte `json:"-"`
	// PrivateKey is a retained PKCS#8 key sealed under the KEK with the
	// request id as associated data; never logged, never returned.
	PrivateKey []byte `json:"PrivateKey,omitempty"`
	// PFXPassword is a PFX enrollment's Password, sealed under the KEK
	// (pki.PFXPasswordAAD): the archive is built when the answer is read.
	PFXPassword    []byte `json:"PFXPassword,omitempty"`
	IdempotencyKey string `json:"IdempotencyKey,omitempty"`
	// IdempotencyFingerprint digests what the submit asked for (see
	// api's submitFingerprint); a repeat under the same key must match it.
	// Written with the record, in the same script; empty on records from
	// before it existed.
	IdempotencyFingerprint string `json:"IdempotencyFingerprint,omitempty"`
	// Generation counts the reconciler's re-enqueues; only the task of the
	// current generation may run the request.
	Generation int64 `json:"Generation,omitempty"`
	// Progress is when the request's score in the open set was last
	// refreshed: the reconciler's "last progress".
	Progress  time.Time         `json:"Progress"`
	Instance  workflow.Instance `json:"Instance"`
	Callbacks []CallbackAttempt `json:"Callbacks,omitempty"`
	// Event is, for an event-triggered run (Trigger EventRunTrigger),
	// the event that started it.
	Event *workflow.Event `json:"Event,omitempty"`
	// EventDepth is, for a request an event-triggered run made (a
	// renewal, a revocation, an enrollment), the depth of the events its
	// changes emit: one more than the run's event's (workflow.Event.Depth).
	EventDepth int `json:"EventDepth,omitempty"`
	// emit are events the next Save writes with the record (Emit).
	emit []workflow.Event
	// retireOrder: the next Save retires the recorded order (RetireOrder).
	retireOrder bool
}

// EventRunTrigger is the Trigger of an event-triggered run's record: its
// definition is named at creation (CreateEventRun), not selected.
const EventRunTrigger = "event"

// Completed ends an event-triggered run whose workflow completed (it
// issues nothing of its own).
const Completed Disposition = "COMPLETED"

// CallbackAttempt records one delivery of the result to CallbackUrl.
type CallbackAttempt struct {
	Attempt   int       `json:"Attempt"`
	At        time.Time `json:"At"`
	MessageID string    `json:"MessageId"`
	Status    int       `json:"Status,omitempty"`
	Error     string    `json:"Error,omitempty"`
	Delivered bool      `json:"Delivered"`
}

// Certificate is the stored record of an issued certificate.
type Certificate struct {
	ID        int64 `json:"ID"`
	RequestID int64 `json:"RequestID"`
	// claim is the issue lock it was made under, until it is stored.
	claim *IssueClaim
	// Chain is DER, leaf first, up to and including the root. It is
	// stored as the leaf and a reference to the chain above it, which is
	// stored once for all the certificates issued with it (certcodec.go);
	// the DER above the leaf is shared with them: read only.
	Chain        [][]byte  `json:"Chain,omitempty"`
	SerialNumber string    `json:"SerialNumber"`
	Thumbprint   string    `json:"Thumbprint"`
	IssuerDN     string    `json:"IssuerDN"`
	SubjectDN    string    `json:"SubjectDN"`
	NotBefore    time.Time `json:"NotBefore"`
	NotAfter     time.Time `json:"NotAfter"`
	Authority    string    `json:"Authority"`
	Template     string    `json:"Template"`
	Requester    string    `json:"Requester"`
	Issued       time.Time `json:"Issued"`
	// OwnerRoleId and OwnerRoleName are the certificate owner's security
	// role, resolved from the request's OwnerRoleId or OwnerRoleName; zero
	// when the request named none.
	OwnerRoleId   int64  `json:"OwnerRoleId,omitempty"`
	OwnerRoleName string `json:"OwnerRoleName,omitempty"`
	// What the inventory shows and searches without parsing the DER,
	// filled at issuance (see certs.go).
	IssuedCN         string   `json:"IssuedCN,omitempty"`
	IssuedOU         string   `json:"IssuedOU,omitempty"`
	IssuedEmail      string   `json:"IssuedEmail,omitempty"`
	KeyType          string   `json:"KeyType,omitempty"` // RSA, ECC, Ed25519
	KeySizeInBits    int      `json:"KeySizeInBits,omitempty"`
	Curve            string   `json:"Curve,omitempty"`
	SigningAlgorithm string   `json:"SigningAlgorithm,omitempty"`
	KeyUsage         int      `json:"KeyUsage,omitempty"`     // crypto/x509's KeyUsage bits
	ExtKeyUsages     []string `json:"ExtKeyUsages,omitempty"` // OIDs, dotted
	SANs             []SAN    `json:"SANs,omitempty"`
	// CRLDistributionPoints are the certificate's CDP URLs.
	CRLDistributionPoints []string `json:"CRLDistributionPoints,omitempty"`
	// Revocation is set once, by the revoke step that revoked it.
	Revocation *Revocation `json:"Revocation,omitempty"`
}

// Metadata is the request's certificate metadata: the values the request
// set, then what its workflow and administrators' edits (PUT
// /Certificates/Metadata) set over them, an empty value there clearing
// the field (nil when there is none). It is what the inventory's metadata
// index holds for its certificate.
func (r *Request) Metadata() map[string]string {
	if len(r.Input.Metadata) == 0 && len(r.Instance.Metadata) == 0 {
		return nil
	}
	md := maps.Clone(r.Input.Metadata)
	if md == nil {
		md = make(map[string]string, len(r.Instance.Metadata))
	}
	for k, v := range r.Instance.Metadata {
		if v == "" {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	if len(md) == 0 {
		return nil
	}
	return md
}

// Ref is what the workflow environment sees of the certificate.
func (c *Certificate) Ref() *workflow.Certificate {
	return &workflow.Certificate{
		ID: c.ID, SerialNumber: c.SerialNumber, Thumbprint: c.Thumbprint,
		IssuerDN: c.IssuerDN, SubjectDN: c.SubjectDN, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Authority: c.Authority,
	}
}

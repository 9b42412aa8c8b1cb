package enroll

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// fingerprintVersion names the encoding submitFingerprint digests; a
// change to what it covers changes it, so that a repeat is never compared
// with a digest of another shape.
const fingerprintVersion = 1

// submitFingerprint digests everything a submit asks for, so that a
// repeat under the same Idempotency-Key can be told from another request:
// the CSR (its signed content, RawTBSCertificateRequest: a renewal with the
// retained key makes its CSR afresh, and a CSR's signature may be
// randomized, yet both ask the same), the trigger and every field of the
// request as checked and normalized (template, CA, formats, SANs with
// their values sorted, metadata and enrollment fields under their
// configured names, owner, callback URL, forceEnroll, the PFX order and
// its password), but not:
//
//   - Timestamp, the client's clock at sending: a retry legitimately
//     sends a new one;
//   - the request id, given after the key is claimed;
//   - PrivateKey's encoding: a private key given must match the CSR's
//     public key, which the CSR part covers.
//
// It is computed once, before a generated key can be married to the
// request (which changes HasPrivateKey), so the first submit and its
// repeats digest the same thing. The digest is keyed (a MAC under the
// KEK): stored with the record, it must not let whoever reads Redis test
// guesses of a PFX password against it.
func (s *Service) submitFingerprint(e *enrollment) string {
	in := e.req.Input
	in.ID, in.Timestamp = 0, time.Time{}
	if in.SANs != nil {
		in.SANs = maps.Clone(in.SANs)
		for k, v := range in.SANs {
			in.SANs[k] = slices.Sorted(slices.Values(v))
		}
	}
	var tbs []byte
	if e.csr != nil {
		tbs = e.csr.RawTBSCertificateRequest
	}
	// encoding/json writes map keys sorted: the encoding is canonical.
	data, err := json.Marshal(struct {
		Version     int
		Trigger     string
		CSR         []byte
		Input       workflow.Request
		PFXPassword string
	}{fingerprintVersion, e.req.Trigger, tbs, in, e.pfxPassword})
	if err != nil {
		// Only maps of JSON scalars and plain fields: cannot fail. Were it
		// to, no repeat would match (Conflict), never a wrong one.
		return ""
	}
	var sum []byte
	if s.kek != nil {
		sum = s.kek.MAC("idempotency", data)
	} else {
		h := sha256.Sum256(data)
		sum = h[:]
	}
	return hex.EncodeToString(sum)
}

// sameSubmit reports whether a repeated submit (again) asks for what the
// first did: their fingerprints match. A first request stored before
// fingerprints existed (an Idempotency-Key lives api.idempotency_ttl) is
// compared as it was then, on the fields the record keeps unchanged.
func sameSubmit(first, again *store.Request) bool {
	if first.IdempotencyFingerprint != "" {
		return hmac.Equal([]byte(first.IdempotencyFingerprint), []byte(again.IdempotencyFingerprint))
	}
	x, y := first.Input, again.Input
	// A renewal with the retained key gets a CSR made afresh each time; a
	// PFX request's CSR is made later, by the worker (its order is compared).
	sameCSR := bytes.Equal(first.CSR, again.CSR) || (x.RenewalCertificateId != 0 && x.HasPrivateKey && y.HasPrivateKey) || x.PFX != nil
	return sameCSR && x.RenewalCertificateId == y.RenewalCertificateId && x.Template == y.Template && x.CertificateAuthority == y.CertificateAuthority &&
		x.Format == y.Format && x.IncludeChain == y.IncludeChain && x.CallbackUrl == y.CallbackUrl &&
		x.OwnerRoleId == y.OwnerRoleId && x.OwnerRoleName == y.OwnerRoleName && samePFX(x.PFX, y.PFX)
}

package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/certflow/certflow/internal/store"
)

// Revoker is implemented by authorities that publish their own
// certificate revocation list. The API process holds no CA keys, so the
// list is signed by workers (the revoke step, and the refresh loop before
// the list goes stale) and published through the store.
type Revoker interface {
	Authority
	// RevocationList signs a CRL (DER) of entries with the given number and
	// validity.
	RevocationList(ctx context.Context, entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error)
}

var _ Revoker = (*Builtin)(nil)

// RevocationList implements Revoker: the issuing CA signs the CRL of the
// certificates it issued. The CRL is released only once it parses and its
// signature verifies under the issuing CA's key.
func (b *Builtin) RevocationList(ctx context.Context, entries []x509.RevocationListEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	issuer := b.issuer
	if len(issuer.SubjectKeyId) == 0 {
		// x509 takes the CRL's authority key identifier from here, and
		// refuses an issuer without one.
		c := *issuer
		c.SubjectKeyId = b.keyID
		issuer = &c
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, issuer, b.signer)
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: sign CRL: %w", b.name, err)
	}
	if err := checkCRL(der, b.issuer); err != nil {
		return nil, fmt.Errorf("built-in CA %s: sign CRL: %w", b.name, err)
	}
	return der, nil
}

// checkCRL verifies a freshly signed CRL's signature under issuer's key.
func checkCRL(der []byte, issuer *x509.Certificate) error {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("the signed CRL does not parse: %w", err)
	}
	if err := issuer.CheckSignature(crl.SignatureAlgorithm, crl.RawTBSRevocationList, crl.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// CRL lifetimes: a CRL is valid for CRLValidity and re-signed once less
// than half of it is left (CRLRefreshBefore), so relying parties that
// cache it until nextUpdate never hold a stale one.
const (
	CRLValidity      = 7 * 24 * time.Hour
	CRLRefreshBefore = CRLValidity / 2
)

// CRLStore is what publishing a CRL needs of the store.
type CRLStore interface {
	NextCRLNumber(ctx context.Context, ca string, floor int64) (int64, error)
	RevokedEntries(ctx context.Context, ca string) ([]store.RevokedEntry, error)
	SaveCRL(ctx context.Context, ca string, c *store.CRL) (bool, error)
	CRL(ctx context.Context, ca string) (*store.CRL, error)
	ClaimCRLRefresh(ctx context.Context, ca string, ttl time.Duration) (bool, error)
	ReleaseCRLRefresh(ctx context.Context, ca string) error
}

// CRLNumberFloor is the least number a CRL signed at now may carry: now
// in microseconds since 1970. The store's counter alone would start again
// at 1 if the store forgot it (the in-memory Redis of `certflow serve`
// restarted, a Redis restored from an older backup), and relying parties
// that hold a CRL with a higher number would keep the old list (RFC 5280
// 5.2.3: numbers only increase). With the floor the numbers keep
// increasing across such a loss as long as the clock does not go back
// past the last CRL's signing time. Microseconds: the counter runs ahead
// of the clock only if more than a million CRLs are signed a second, and
// the numbers stay below 2^53 (exact in JSON numbers) until the year
// 2255 and far below RFC 5280's 20 octets.
func CRLNumberFloor(now time.Time) int64 { return now.UnixMicro() }

// PublishCRL signs a fresh CRL of the CA's revoked certificates that have
// not expired yet and publishes it. The number is taken before the
// entries are read, so of two signers racing the one published (the
// higher number) holds every entry either saw.
func PublishCRL(ctx context.Context, st CRLStore, r Revoker, now time.Time) (*store.CRL, error) {
	name := r.Name()
	n, err := st.NextCRLNumber(ctx, name, CRLNumberFloor(now))
	if err != nil {
		return nil, err
	}
	revoked, err := st.RevokedEntries(ctx, name)
	if err != nil {
		return nil, err
	}
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, e := range revoked {
		if !e.NotAfter.IsZero() && e.NotAfter.Before(now) {
			continue // RFC 5280 5.1.2.6: an expired certificate may leave the list
		}
		serial, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("CRL of %s: certificate %d has a malformed serial %q", name, e.CertificateID, e.Serial)
		}
		entry := x509.RevocationListEntry{SerialNumber: serial, RevocationTime: e.RevokedAt.UTC(), ReasonCode: e.Reason}
		if !e.InvalidityDate.IsZero() {
			ext, err := invalidityDate(e.InvalidityDate)
			if err != nil {
				return nil, fmt.Errorf("CRL of %s: certificate %d: %w", name, e.CertificateID, err)
			}
			entry.ExtraExtensions = []pkix.Extension{ext}
		}
		entries = append(entries, entry)
	}
	this := now.Add(-backdate).UTC().Truncate(time.Second)
	crl := &store.CRL{Number: n, ThisUpdate: this, NextUpdate: this.Add(CRLValidity)}
	if crl.DER, err = r.RevocationList(ctx, entries, big.NewInt(n), crl.ThisUpdate, crl.NextUpdate); err != nil {
		return nil, err
	}
	if _, err := st.SaveCRL(ctx, name, crl); err != nil {
		return nil, err
	}
	return crl, nil
}

// oidInvalidityDate is RFC 5280 5.3.2's CRL entry extension.
var oidInvalidityDate = asn1.ObjectIdentifier{2, 5, 29, 24}

// invalidityDate is the non-critical CRL entry extension that says from
// when a certificate is known or suspected to have been invalid (a key
// compromised before the CA heard of it), as a GeneralizedTime in UTC to
// the second (RFC 5280 4.1.2.5.2: no fractional seconds).
func invalidityDate(t time.Time) (pkix.Extension, error) {
	v, err := asn1.MarshalWithParams(t.UTC().Truncate(time.Second), "generalized")
	return pkix.Extension{Id: oidInvalidityDate, Value: v}, err
}

// RefreshCRL publishes the CA's CRL when none is published yet or the
// published one has less than CRLRefreshBefore left, one process at a
// time. It reports whether it published one.
func RefreshCRL(ctx context.Context, st CRLStore, r Revoker, now time.Time) (bool, error) {
	cur, err := st.CRL(ctx, r.Name())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	if cur != nil && cur.NextUpdate.Sub(now) > CRLRefreshBefore {
		return false, nil
	}
	claimed, err := st.ClaimCRLRefresh(ctx, r.Name(), time.Minute)
	if err != nil || !claimed {
		return false, err
	}
	defer st.ReleaseCRLRefresh(context.WithoutCancel(ctx), r.Name())
	if _, err := PublishCRL(ctx, st, r, now); err != nil {
		return false, err
	}
	return true, nil
}

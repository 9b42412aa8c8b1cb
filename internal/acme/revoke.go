package acme

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"

	"github.com/certflow/certflow/internal/ca"
)

// RevokeAtCA asks the CA to revoke leaf (DER) for reason (RFC 5280
// CRLReason), signed with the account's key: the account ordered it. A
// certificate the CA reports revoked already counts as revoked.
func (a *Authority) RevokeAtCA(ctx context.Context, leaf []byte, reason int) error {
	if reason < 0 || reason > 10 {
		return fmt.Errorf("acme %s: revocation reason %d is not an RFC 5280 CRLReason", a.name, reason)
	}
	err := a.revoke(ctx, leaf, reason)
	if a.forgetLostAccount(ctx, err) {
		err = a.revoke(ctx, leaf, reason)
	}
	return err
}

func (a *Authority) revoke(ctx context.Context, leaf []byte, reason int) error {
	core, err := a.client(ctx)
	if err != nil {
		return err
	}
	ctx, slot := withRetryAfter(ctx)
	r := uint(reason)
	err = core.Certificates.Revoke(ctx, legoacme.RevokeCertMessage{Certificate: base64.RawURLEncoding.EncodeToString(leaf), Reason: &r})
	if p, ok := errors.AsType[*legoacme.ProblemDetails](err); ok && p.Type == legoacme.AlreadyRevokedErrorType {
		return nil
	}
	return a.mapErr("revoke", err, slot)
}

// RenewalInfo asks the CA for its renewal window for leaf (ARI, RFC
// 9773): ca.ErrNoRenewalInfo when its directory offers none.
func (a *Authority) RenewalInfo(ctx context.Context, leaf *x509.Certificate) (*ca.RenewalInfo, error) {
	core, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	if core.GetDirectory().RenewalInfo == "" {
		return nil, ca.ErrNoRenewalInfo
	}
	id, err := api.MakeARICertID(leaf)
	if err != nil {
		return nil, fmt.Errorf("acme %s: renewal info: %w", a.name, err)
	}
	ctx, slot := withRetryAfter(ctx)
	info, err := core.Certificates.GetRenewalInfo(ctx, id)
	if errors.Is(err, api.ErrNoARI) {
		return nil, ca.ErrNoRenewalInfo
	}
	if err != nil {
		return nil, a.mapErr("renewal info", err, slot)
	}
	return &ca.RenewalInfo{
		Start: info.SuggestedWindow.Start, End: info.SuggestedWindow.End,
		ExplanationURL: info.ExplanationURL, RetryAfter: info.RetryAfter,
	}, nil
}

func sorted(s []string) []string { slices.Sort(s); return s }

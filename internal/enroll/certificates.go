package enroll

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
)

// IssuedCertificate loads certificate id or, when id is 0, the one with
// the SHA-1 thumbprint (hex, any case), with the request that issued it:
// the one look-up by CertID/CertificateId or Thumbprint that Download,
// Recover and Renew share. store.ErrNotFound when there is no such
// certificate; whether the caller may see it is the caller's to check.
func (s *Service) IssuedCertificate(ctx context.Context, id int64, thumbprint string) (*store.Request, *store.Certificate, error) {
	if id == 0 {
		c, err := s.store.CertificateByThumbprint(ctx, thumbprint)
		if err != nil {
			return nil, nil, err
		}
		id = c.ID
	}
	r, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	c, err := r.Certificate()
	if err == nil && c == nil {
		err = fmt.Errorf("request %d issued no certificate: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	return r, c, nil
}

// sameDN compares distinguished names without regard to case or to the
// spaces around separators (Keyfactor writes "CN=a, O=b", Go "CN=a,O=b";
// "CN = a" is "cn=a" too).
func sameDN(a, b string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		for _, sep := range []string{",", "+", "="} {
			parts := strings.Split(s, sep)
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			s = strings.Join(parts, sep)
		}
		return s
	}
	return norm(a) == norm(b)
}

// CertificateBySerial finds the issued certificate with a serial number
// (hex, any case, colons and leading zeros allowed) under an issuer DN
// (see sameDN) that visible accepts, walking the inventory (bounded by
// api.max_scan: beyond it, a TooBroad refusal naming SerialNumber);
// store.ErrNotFound when there is none.
func (s *Service) CertificateBySerial(ctx context.Context, serial, issuer string, visible func(*store.Request) bool) (*store.Request, *store.Certificate, error) {
	serial = strings.TrimLeft(strings.ToUpper(strings.ReplaceAll(serial, ":", "")), "0")
	var req *store.Request
	var c *store.Certificate
	err := s.WalkCertificates(ctx, func(r *store.Request, cert *store.Certificate) bool {
		if strings.TrimLeft(cert.SerialNumber, "0") == serial && sameDN(cert.IssuerDN, issuer) && visible(r) {
			req, c = r, cert
			return false
		}
		return true
	})
	if err == nil && c == nil {
		err = fmt.Errorf("certificate with serial number %s from %s: %w", serial, issuer, store.ErrNotFound)
	}
	if e := (*Error)(nil); errors.As(err, &e) && e.Code == keyfactor.CodeTooBroad {
		err = fieldError(Invalid, keyfactor.CodeTooBroad, "SerialNumber",
			"the search read %d certificates (api.max_scan) without finding %s, and more remain unread; download by CertID or Thumbprint, which are looked up directly", s.cfg.API.MaxScan, serial)
	}
	return req, c, err
}

// WalkIndex pages through an id index in ascending order (next returns
// up to n ids after after), loading a hundred records per round trip
// with load and visiting them until visit says stop, reading at most
// limit ids. Should visit still want more when limit ids are read and
// the index holds more, it answers TooBroad: never a partial walk that
// looks finished. The certificate inventory and the pending CSRs are
// walked so.
func WalkIndex[T any](ctx context.Context, limit int,
	next func(ctx context.Context, after, n int64) ([]int64, error),
	load func(ctx context.Context, ids []int64) ([]T, error),
	visit func(T) (more bool, err error),
) error {
	var after int64
	for read := 0; ; {
		if read >= limit {
			rest, err := next(ctx, after, 1)
			if err == nil && len(rest) > 0 {
				err = TooBroad(read)
			}
			return err
		}
		ids, err := next(ctx, after, int64(min(100, limit-read)))
		if err != nil || len(ids) == 0 {
			return err
		}
		after, read = ids[len(ids)-1], read+len(ids)
		records, err := load(ctx, ids)
		if err != nil {
			return err
		}
		for _, rec := range records {
			if more, err := visit(rec); err != nil || !more {
				return err
			}
		}
	}
}

// WalkCertificates visits issued certificates with their requests, the
// oldest first, reading at most api.max_scan of them (then TooBroad, if
// visit still wants more and more remain).
func (s *Service) WalkCertificates(ctx context.Context, visit func(*store.Request, *store.Certificate) bool) error {
	return WalkIndex(ctx, s.cfg.API.MaxScan, s.store.CertificateIDs, s.store.GetMany, func(r *store.Request) (bool, error) {
		return OfferCertificate(r, visit)
	})
}

// OfferCertificate passes an issued request with its certificate to visit
// (a request without one is passed over) and reports whether to go on.
func OfferCertificate(r *store.Request, visit func(*store.Request, *store.Certificate) bool) (more bool, err error) {
	c, err := r.Certificate()
	if err != nil || c == nil {
		return err == nil, err
	}
	return visit(r, c), nil
}

// CertificateOf returns an issued request's certificate: the one read with
// the record, else (a record from before it was issued) read now.
func (s *Service) CertificateOf(ctx context.Context, req *store.Request) (*store.Certificate, error) {
	if c, err := req.Certificate(); c != nil || err != nil {
		return c, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	return s.store.CertificateOf(ctx, req.ID)
}

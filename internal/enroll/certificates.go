package enroll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certflow/certflow/internal/config"

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

// SearchCertificates answers a certificate search for caller (the terms
// checked with store.CheckTerm; bounds are set here from api.max_scan and
// api.max_index_read): approvers and administrators search every
// certificate, anyone else only those they requested (the search is
// narrowed to them by the requester index, so neither the answer nor
// its cost tells anything of others'). A search the bounds cannot answer
// is refused (TooBroad), as is any but the unfiltered listing by id while
// the inventory's indexes are being built.
func (s *Service) SearchCertificates(ctx context.Context, caller *Caller, q store.Query) (*store.QueryResult, error) {
	if !caller.Has(config.RoleApprover) {
		q.Owner = caller.Name
		q.Visible = func(r *store.Request) bool { return CertificateVisible(r, caller) }
	}
	q.MaxIndex, q.MaxRecords = s.cfg.API.MaxIndexRead, s.cfg.API.MaxScan
	if len(q.Terms) > 0 || q.Owner != "" || (q.Sort != "" && q.Sort != "id" && q.Sort != "certrequestid") {
		ready, err := s.store.InventoryReady(ctx)
		if err != nil {
			return nil, err
		}
		if !ready {
			s.buildInventoryLater()
			return nil, &Error{Kind: NotYet, Code: keyfactor.CodeUnavailable, RetryAfter: 10 * time.Second,
				Message: "the certificate inventory's indexes are being built for the certificates stored before them; searches are answered once they are (GET /Certificates unfiltered, and look-ups by id, are answered now); retry after 10s"}
		}
	}
	res, err := s.store.QueryCertificates(ctx, q)
	var tb *store.TooBroadError
	if errors.As(err, &tb) {
		return nil, tooBroad(tb, q)
	}
	return res, err
}

// buildInventoryLater starts store.BuildInventory in the background,
// at most once a minute per process.
func (s *Service) buildInventoryLater() {
	now := time.Now().UnixNano()
	last := s.inventoryBuild.Load()
	if now-last < int64(time.Minute) || !s.inventoryBuild.CompareAndSwap(last, now) {
		return
	}
	go s.store.BuildInventory(context.Background()) // another process's lock, or its error, leaves it for the next minute
}

// boundSetting names the setting behind the bound a search reached.
func boundSetting(tb *store.TooBroadError) string {
	if tb.Bound == "records" {
		return "api.max_scan"
	}
	return "api.max_index_read"
}

// tooBroad is TooBroad for a search refused by its bounds.
func tooBroad(tb *store.TooBroadError, q store.Query) *Error {
	msg := fmt.Sprintf("the search read %d %s (%s) before its page was complete, and more remain unread; narrow it with a term an index answers (Id, Thumbprint, SerialNumber, IssuedCN, IssuedDN or SAN -eq/-startswith, NotAfter/NotBefore ranges, CertState, TemplateName, CertificateAuthorityName, RequesterName, metadata -eq)",
		tb.Read, map[string]string{"index": "index entries", "records": "records"}[tb.Bound], boundSetting(tb))
	if q.Sort == "" || q.Sort == "id" || q.Sort == "certrequestid" {
		msg += ", or page by Id: add `AND Id -gt <the last Id you read>` and ask for page 1 again"
	}
	return fieldError(Invalid, keyfactor.CodeTooBroad, "pq.queryString", "%s", msg)
}

// CertificateBySerial finds the issued certificate with a serial number
// (hex, any case, colons and leading zeros allowed) under an issuer DN
// (compared as store.NormalizeDN does) that visible accepts, through the
// serial number index; store.ErrNotFound when there is none.
func (s *Service) CertificateBySerial(ctx context.Context, serial, issuer string, visible func(*store.Request) bool) (*store.Request, *store.Certificate, error) {
	res, err := s.store.QueryCertificates(ctx, store.Query{
		Terms: []store.Term{{Field: "serialnumber", Op: "eq", Value: serial}, {Field: "issuerdn", Op: "eq", Value: issuer}},
		Limit: 1, MaxIndex: s.cfg.API.MaxIndexRead, MaxRecords: s.cfg.API.MaxScan, Visible: visible,
	})
	var tb *store.TooBroadError
	switch {
	case errors.As(err, &tb):
		return nil, nil, fieldError(Invalid, keyfactor.CodeTooBroad, "SerialNumber",
			"%d certificates carry serial number %s, more than the search reads (%s); download by CertID or Thumbprint", tb.Read, serial, boundSetting(tb))
	case err != nil:
		return nil, nil, err
	case len(res.Matches) == 0:
		return nil, nil, fmt.Errorf("certificate with serial number %s from %s: %w", serial, issuer, store.ErrNotFound)
	}
	return res.Matches[0].Request, res.Matches[0].Certificate, nil
}

// WalkIndex pages through an id index in ascending order (next returns
// up to n ids after after), loading a hundred records per round trip
// with load and visiting them until visit says stop, reading at most
// limit ids. Should visit still want more when limit ids are read and
// the index holds more, it answers TooBroad: never a partial walk that
// looks finished. The pending CSRs are walked so (certificates are
// searched through their indexes: SearchCertificates).
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

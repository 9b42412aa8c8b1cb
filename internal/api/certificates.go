package api

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// Keyfactor's CertState values certflow uses, and their names.
const (
	certStateActive  = 1
	certStateRevoked = 2
)

// keyfactorKeyTypes number key types as Keyfactor's KeyType does.
var keyfactorKeyTypes = map[string]int{"RSA": 1, "DSA": 2, "ECC": 3, "DH": 4, "Ed25519": 5, "Ed448": 6}

// dotnetKeyUsage converts crypto/x509's key usage bits to the .NET
// X509KeyUsageFlags values Keyfactor's KeyUsage carries (the bits of the
// DER BIT STRING's first byte, most significant first; DecipherOnly 0x8000).
func dotnetKeyUsage(ku x509.KeyUsage) int {
	out := 0
	for bit := 0; bit < 8; bit++ {
		if ku&(1<<bit) != 0 {
			out |= 0x80 >> bit
		}
	}
	if ku&x509.KeyUsageDecipherOnly != 0 {
		out |= 0x8000
	}
	return out
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// renderOptions are Keyfactor's switches on what a certificate record
// carries.
type renderOptions struct {
	metadata, hasPrivateKey bool
}

// parseRenderOptions reads includeMetadata and includeHasPrivateKey (both
// default true), and checks includeLocations, verbose and collectionId
// (accepted; certflow has no locations or collections).
func parseRenderOptions(q url.Values) (renderOptions, error) {
	o := renderOptions{metadata: true, hasPrivateKey: true}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"includeMetadata", &o.metadata}, {"includeHasPrivateKey", &o.hasPrivateKey}, {"includeLocations", new(bool)}} {
		if v := queryParam(q, f.name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, badField(f.name, "want true or false, got %q", v)
			}
			*f.dst = b
		}
	}
	for _, name := range []string{"verbose", "collectionId"} {
		if v := queryParam(q, name); v != "" {
			if _, err := strconv.Atoi(v); err != nil {
				return o, badField(name, "want an integer, got %q", v)
			}
		}
	}
	return o, nil
}

// certificateRecord renders an issued certificate with its request.
func (s *Server) certificateRecord(r *store.Request, c *store.Certificate, o renderOptions) keyfactor.CertificateRecord {
	out := keyfactor.CertificateRecord{
		Id: c.ID, Thumbprint: c.Thumbprint, SerialNumber: c.SerialNumber, IssuedDN: c.SubjectDN, IssuedCN: c.IssuedCN,
		ImportDate: c.Issued, NotBefore: c.NotBefore, NotAfter: c.NotAfter, IssuerDN: c.IssuerDN,
		KeySizeInBits: c.KeySizeInBits, KeyType: keyfactorKeyTypes[c.KeyType], KeyTypeString: c.KeyType,
		IssuedOU: optString(c.IssuedOU), IssuedEmail: optString(c.IssuedEmail),
		KeyUsage: dotnetKeyUsage(x509.KeyUsage(c.KeyUsage)), SigningAlgorithm: c.SigningAlgorithm,
		CertState: certStateActive, CertStateString: "Active",
		CertificateAuthorityName: c.Authority, TemplateName: c.Template,
		CertRequestId: c.RequestID, RequesterName: c.Requester, Curve: optString(c.Curve),
		ExtendedKeyUsages: []keyfactor.ExtendedKeyUsage{}, SubjectAltNameElements: []keyfactor.SubjectAltName{},
		CRLDistributionPoints: []keyfactor.CRLDistributionPnt{}, LocationsCount: []any{}, SSLLocations: []any{}, Locations: []any{},
		Metadata: map[string]string{},
	}
	if len(c.Chain) > 0 {
		out.ContentBytes = base64.StdEncoding.EncodeToString(c.Chain[0])
	}
	if rev := c.Revocation; rev != nil {
		eff, reason := rev.EffectiveDate, rev.Reason
		out.CertState, out.CertStateString = certStateRevoked, "Revoked"
		out.RevocationEffDate, out.RevocationReason, out.RevocationComment = &eff, &reason, optString(rev.Comment)
	}
	for i, t := range s.cfg.Templates {
		if strings.EqualFold(t.Name, c.Template) {
			out.TemplateId = i + 1
		}
	}
	for i := range s.cfg.CAs {
		if strings.EqualFold(s.cfg.CAs[i].Name, c.CAName()) {
			out.CertificateAuthorityId = i + 1
		}
	}
	for _, oid := range c.ExtKeyUsages {
		out.ExtendedKeyUsages = append(out.ExtendedKeyUsages, extendedKeyUsage(oid))
	}
	for i, san := range c.SANs {
		out.SubjectAltNameElements = append(out.SubjectAltNameElements, keyfactor.SubjectAltName{Id: i + 1, Value: san.Value, Type: san.Type, ValueHash: hashHex(san.Value)})
	}
	for i, u := range c.CRLDistributionPoints {
		out.CRLDistributionPoints = append(out.CRLDistributionPoints, keyfactor.CRLDistributionPnt{Id: i + 1, Url: u, UrlHash: hashHex(u)})
	}
	if r != nil {
		if o.metadata {
			out.Metadata = keyfactor.RequestMetadata(r)
		}
		if o.hasPrivateKey {
			out.HasPrivateKey = len(r.PrivateKey) > 0 || r.Input.HasPrivateKey
			out.KeyRecoverable = out.HasPrivateKey
		}
	}
	if c.OwnerRoleId > 0 {
		id := c.OwnerRoleId
		out.OwnerRoleId = &id
	}
	out.OwnerRoleName = optString(c.OwnerRoleName)
	return out
}

// loadCertificate loads certificate id with its request for viewer: 404
// when there is none or it is another's the viewer may not see.
func (s *Server) loadCertificate(ctx context.Context, id int64, viewer *enroll.Caller) (*store.Request, *store.Certificate, error) {
	r, c, err := s.enroll.IssuedCertificate(ctx, id, "")
	if errors.Is(err, store.ErrNotFound) || err == nil && !enroll.CertificateVisible(r, viewer) {
		return nil, nil, newError(http.StatusNotFound, keyfactor.CodeNotFound, "certificate %d: not found", id)
	}
	return r, c, err
}

// handleGetCertificate is GET /Certificates/{id}.
func (s *Server) handleGetCertificate(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "certificate")
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	o, err := parseRenderOptions(r.URL.Query())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, c, err := s.loadCertificate(ctx, id, identity(r))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, s.certificateRecord(req, c, o))
}

// handleListCertificates is GET /Certificates: a JSON array, as
// Keyfactor's, of one page of the certificates the caller may see that
// match pq.queryString, in the order of pq.sortField and
// pq.sortAscending, answered from the inventory's indexes
// (enroll.Service.SearchCertificates). X-Total-Count says how many match
// in all, when the search knows it.
func (s *Server) handleListCertificates(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	q, err := s.certificateQuery(r, p)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	o, err := parseRenderOptions(r.URL.Query())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.API.RedisTimeout)
	defer cancel()
	res, err := s.enroll.SearchCertificates(ctx, identity(r), q)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out := make([]keyfactor.CertificateRecord, len(res.Matches))
	for i, m := range res.Matches {
		out[i] = s.certificateRecord(m.Request, m.Certificate, o)
	}
	if res.Total >= 0 {
		w.Header().Set("X-Total-Count", strconv.FormatInt(res.Total, 10))
	}
	writeJSON(w, http.StatusOK, out)
}

// certificateQuery makes a store.Query of a page's terms and the sort
// parameters: Keyfactor's field names (any case), SAN for subject
// alternative names, and metadata fields by their configured names or as
// Metadata.<name>.
func (s *Server) certificateQuery(r *http.Request, p page) (store.Query, error) {
	q := store.Query{Offset: (p.number - 1) * p.limit, Limit: p.limit}
	for _, t := range p.terms {
		field := t.field
		if store.OpsOf(field) == nil {
			if name, ok := strings.CutPrefix(field, "metadata."); ok || s.isMetadataField(field) {
				if !ok {
					name = field
				}
				field = "metadata." + name
			}
		}
		term := store.Term{Field: field, Op: t.op, Value: t.value}
		if store.OpsOf(field) == nil {
			return q, badField("pq.queryString", "unknown field %q (fields: %s, SAN, and metadata fields by name or as Metadata.<name>)", t.name, strings.Join(certificateFieldNames, ", "))
		}
		if err := store.CheckTerm(term); err != nil {
			return q, badField("pq.queryString", "%v", err)
		}
		q.Terms = append(q.Terms, term)
	}
	if v := queryParam(r.URL.Query(), "sortField"); v != "" {
		q.Sort = strings.ToLower(v)
		if !slices.Contains(store.SortFields, q.Sort) {
			return q, badField("pq.sortField", "%q is not a sort order certflow serves: want one of Id, CertRequestId, NotAfter, NotBefore, IssuedCN, IssuedDN, SerialNumber", v)
		}
	}
	// Keyfactor's newer releases take includeRevoked and includeExpired
	// (their default false); certflow's listing has always shown every
	// certificate, so its default stays true, and false narrows.
	for _, f := range []struct {
		name string
		term store.Term
	}{
		{"includeRevoked", store.Term{Field: "certstate", Op: "ne", Value: "2"}},
		{"includeExpired", store.Term{Field: "notafter", Op: "gt", Value: time.Now().UTC().Format(time.RFC3339)}},
	} {
		v := queryParam(r.URL.Query(), f.name)
		if v == "" {
			continue
		}
		include, err := strconv.ParseBool(v)
		if err != nil {
			return q, badField(f.name, "want true or false, got %q", v)
		}
		if !include {
			q.Terms = append(q.Terms, f.term)
		}
	}
	if len(q.Terms) > store.MaxTerms {
		return q, badField("pq.queryString", "at most %d terms (includeRevoked and includeExpired false count as one each), not %d", store.MaxTerms, len(q.Terms))
	}
	switch v := strings.ToLower(queryParam(r.URL.Query(), "sortAscending")); v {
	case "", "0", "true":
	case "1", "false":
		q.Descending = true
	default:
		return q, badField("pq.sortAscending", "want 0 (ascending) or 1 (descending), as Keyfactor's SortOrder, got %q", v)
	}
	return q, nil
}

// certificateFieldNames are the fields of GET /Certificates' queryString,
// as Keyfactor spells them (errors list them).
var certificateFieldNames = []string{"Id", "CertRequestId", "Thumbprint", "SerialNumber", "IssuedDN", "IssuedCN", "IssuerDN",
	"IssuedOU", "IssuedEmail", "CertState", "CertStateString", "TemplateName", "RequesterName", "CertificateAuthorityName",
	"KeyTypeString", "KeySizeInBits", "NotBefore", "NotAfter"}

// isMetadataField reports whether name (lower-case) is a configured
// metadata field's.
func (s *Server) isMetadataField(name string) bool {
	return slices.ContainsFunc(s.cfg.Metadata, func(f config.MetaField) bool { return strings.EqualFold(f.Name, name) })
}

// handleDownloadCertificate is POST /Certificates/Download: by CertID, by
// Thumbprint, or by SerialNumber with IssuerDN; x-certificateformat PEM
// (the default), DER (the leaf alone) or P7B.
func (s *Server) handleDownloadCertificate(w http.ResponseWriter, r *http.Request) {
	format := strings.ToUpper(strings.TrimSpace(r.Header.Get("x-certificateformat")))
	switch format {
	case "":
		format = "PEM"
	case "PEM", "DER", "P7B":
	default:
		writeError(w, r, s.log, badField("x-certificateformat header", "unknown format %q: want PEM, DER or P7B", r.Header.Get("x-certificateformat")))
		return
	}
	var body keyfactor.CertificateDownloadRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	leafFirst, err := enroll.ChainOrder(body.ChainOrder)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	switch {
	case body.CertID < 0:
		writeError(w, r, s.log, badField("CertID", "want a positive certificate id, got %d", body.CertID))
		return
	case body.CertID == 0 && body.Thumbprint == "" && body.SerialNumber == "":
		writeError(w, r, s.log, badField("CertID", "required: give CertID, Thumbprint, or SerialNumber with IssuerDN"))
		return
	case body.CertID == 0 && body.Thumbprint == "" && strings.TrimSpace(body.IssuerDN) == "":
		writeError(w, r, s.log, badField("IssuerDN", "required with SerialNumber"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.API.RedisTimeout)
	defer cancel()
	viewer := identity(r)
	var c *store.Certificate
	switch {
	case body.CertID > 0:
		_, c, err = s.loadCertificate(ctx, body.CertID, viewer)
	case body.Thumbprint != "":
		var req *store.Request
		req, c, err = s.enroll.IssuedCertificate(ctx, 0, strings.ReplaceAll(body.Thumbprint, ":", ""))
		if errors.Is(err, store.ErrNotFound) || err == nil && !enroll.CertificateVisible(req, viewer) {
			err = newError(http.StatusNotFound, keyfactor.CodeNotFound, "certificate with thumbprint %s: not found", body.Thumbprint)
		}
	default:
		_, c, err = s.enroll.CertificateBySerial(ctx, body.SerialNumber, body.IssuerDN, func(req *store.Request) bool { return enroll.CertificateVisible(req, viewer) })
		if errors.Is(err, store.ErrNotFound) {
			err = newError(http.StatusNotFound, keyfactor.CodeNotFound, "certificate with serial number %s from %s: not found", body.SerialNumber, body.IssuerDN)
		}
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	chain := c.Chain[:1]
	if body.IncludeChain {
		chain = slices.Clone(c.Chain)
		if !leafFirst {
			slices.Reverse(chain)
		}
	}
	var content []byte
	switch format {
	case "DER":
		content = c.Chain[0] // DER holds one certificate
	case "P7B":
		if content, err = pki.EncodeP7B(chain); err != nil {
			writeError(w, r, s.log, err)
			return
		}
	default:
		pems, err := pki.EncodeChain(chain, pki.FormatPEM, false)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		content = []byte(strings.Join(pems, ""))
	}
	writeJSON(w, http.StatusOK, keyfactor.CertificateDownloadResponse{Content: base64.StdEncoding.EncodeToString(content)})
}

package app_test

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil"
)

// oidInvalidityDate is RFC 5280 5.3.2's CRL entry extension.
var oidInvalidityDate = asn1.ObjectIdentifier{2, 5, 29, 24}

// invalidityDateOf is a CRL entry's invalidityDate, checked to be a
// non-critical GeneralizedTime; ok is false when the entry has none.
func invalidityDateOf(t *testing.T, e x509.RevocationListEntry) (date time.Time, ok bool) {
	t.Helper()
	for _, ext := range e.Extensions {
		if !ext.Id.Equal(oidInvalidityDate) {
			continue
		}
		if ext.Critical {
			t.Errorf("the invalidityDate extension is critical")
		}
		var raw asn1.RawValue
		if _, err := asn1.Unmarshal(ext.Value, &raw); err != nil || raw.Tag != asn1.TagGeneralizedTime {
			t.Fatalf("invalidityDate %x is not a GeneralizedTime (%v)", ext.Value, err)
		}
		if _, err := asn1.UnmarshalWithParams(ext.Value, &date, "generalized"); err != nil {
			t.Fatal(err)
		}
		return date, true
	}
	return time.Time{}, false
}

// TestPolicyRevocationDates: a revocation's date on the CRL is when
// certflow processed it. A requester's EffectiveDate is a claim about
// the past: it may not precede the certificate's NotBefore, nor lie in
// the future, and it goes on the CRL entry as its invalidityDate. Every
// refusal names EffectiveDate and leaves nothing behind: no request, no
// claim, no revocation.
func TestPolicyRevocationDates(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	old, oldChain := issueAs(t, cf, alice, "old.example.com", nil)
	oldNotBefore := oldChain[0].NotBefore
	// A certificate one second younger at least: a date between the two
	// NotBefores is good for one and not the other.
	waitFor(t, "the next second", func() bool { return time.Now().Add(-time.Minute).Truncate(time.Second).After(oldNotBefore) })
	young, youngChain := issueAs(t, cf, alice, "young.example.com", nil)
	youngNotBefore := youngChain[0].NotBefore
	if !youngNotBefore.After(oldNotBefore) {
		t.Fatalf("NotBefore %s of the younger certificate is not after %s", youngNotBefore, oldNotBefore)
	}

	ctx := context.Background()
	snapshot := func() string {
		seq, _ := cf.Redis.Get(ctx, cf.Prefix+":seq:request").Result()
		reqs, _ := cf.Redis.Keys(ctx, cf.Prefix+":request:*").Result()
		var claims []string
		for _, id := range []int64{old, young} {
			c, _ := cf.Redis.HGet(ctx, fmt.Sprintf("%s:request:{%d}", cf.Prefix, id), "rv").Result()
			claims = append(claims, c)
		}
		return fmt.Sprintf("seq=%s requests=%d claims=%q", seq, len(reqs), claims)
	}
	before := snapshot()
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	refusals := []struct {
		name string
		ids  []int64
		date any
		says string // in the message, beside the field
	}{
		{"a date in 1999", []int64{old}, "1999-01-01T00:00:00Z", ""},
		{"a second before the certificate's NotBefore", []int64{old}, rfc(oldNotBefore.Add(-time.Second)), ""},
		{"a day before the certificate's NotBefore, without a zone", []int64{old}, oldNotBefore.Add(-24 * time.Hour).UTC().Format("2006-01-02T15:04:05"), ""},
		{"before the NotBefore of the second of two certificates", []int64{old, young}, rfc(youngNotBefore.Add(-time.Second)), "CertificateIds[1]"},
		{"before the NotBefore of the first of two certificates", []int64{young, old}, rfc(oldNotBefore.Add(-time.Second)), "CertificateIds[0]"},
		{"tomorrow", []int64{old}, rfc(time.Now().Add(24 * time.Hour)), ""},
		{"ten minutes ahead", []int64{old}, rfc(time.Now().Add(10 * time.Minute)), ""},
		{"the year 9999", []int64{old}, "9999-12-31T23:59:59Z", ""},
		{"no date at all", []int64{old}, "yesterday", ""},
		{"a number", []int64{old}, 946684800, ""},
		{"a date with a NUL", []int64{old}, rfc(time.Now()) + "\x00", ""},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := revoke(t, cf, alice, map[string]any{"CertificateIds": tt.ids, "Reason": 1, "Comment": "key compromised", "EffectiveDate": tt.date})
			wantError(t, resp, 400, "0xA0010001", "EffectiveDate")
			if !strings.Contains(string(resp.Body), tt.says) {
				t.Errorf("the refusal does not say %q: %s", tt.says, resp.Body)
			}
			if after := snapshot(); after != before {
				t.Fatalf("a refused revocation wrote: %s, was %s", after, before)
			}
			for _, id := range []int64{old, young} {
				if _, rec := getCert(t, cf, alice, id, ""); rec.CertState != 1 {
					t.Fatalf("certificate %d is %s", id, rec.CertStateString)
				}
			}
		})
	}

	// Accepted: the earlier date is the invalidityDate; the revocation
	// date is when certflow revoked it. A revocation without a date has
	// no invalidityDate.
	claimed := youngNotBefore.Add(-time.Second).UTC()
	start := time.Now().UTC().Truncate(time.Second)
	resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{old}, "Reason": 1, "Comment": "key compromised", "EffectiveDate": rfc(claimed)})
	if resp.Status != 200 || !slices.Equal(rr.RevokedIds, []int64{old}) {
		t.Fatalf("revoke with an earlier date: %d %s", resp.Status, resp.Body)
	}
	if resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{young}, "Reason": 4, "Comment": "superseded"}); resp.Status != 200 || !slices.Equal(rr.RevokedIds, []int64{young}) {
		t.Fatalf("revoke without a date: %d %s", resp.Status, resp.Body)
	}
	end := time.Now().UTC()
	if _, rec := getCert(t, cf, alice, old, ""); rec.RevocationEffDate == nil || *rec.RevocationEffDate != rfc(claimed) {
		t.Errorf("RevocationEffDate %v, want the requester's %s", rec.RevocationEffDate, rfc(claimed))
	}
	crlPEM := filepath.Join(t.TempDir(), "crl.pem")
	crl := fetchCRL(t, cf, "/CRL/"+config.DefaultCAName, oldChain[1], crlPEM)
	if len(crl.RevokedCertificateEntries) != 2 {
		t.Fatalf("CRL lists %d certificates, want 2", len(crl.RevokedCertificateEntries))
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.RevocationTime.Before(start) || e.RevocationTime.After(end) {
			t.Errorf("serial %x revoked at %s on the CRL, want the time certflow processed it (%s to %s)", e.SerialNumber, e.RevocationTime, start, end)
		}
		date, ok := invalidityDateOf(t, e)
		switch e.SerialNumber.Cmp(oldChain[0].SerialNumber) {
		case 0:
			if !ok || !date.Equal(claimed) {
				t.Errorf("invalidityDate of the certificate revoked with a date: %s (%v), want %s", date, ok, claimed)
			}
		default:
			if ok {
				t.Errorf("the certificate revoked without a date has invalidityDate %s", date)
			}
		}
	}
	out := openssl(t, "crl", "-inform", "DER", "-in", crlPEM+".der", "-noout", "-text")
	if want := claimed.Format("Jan _2 15:04:05 2006 GMT"); !strings.Contains(out, "Invalidity Date") || !strings.Contains(out, want) {
		t.Errorf("openssl crl -text shows no Invalidity Date %s:\n%s", want, out)
	}
}

package steps_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"testing"
	"time"

	"github.com/certflow/certflow/definitions"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

func TestRevokeStepLoads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []string
		err   string // "" means it loads
		step  string
	}{
		{name: "a revocation definition that leaves it out gets it appended",
			lines: []string{"name: t", "trigger: revocation", "steps:", "  - id: gate", "    uses: approval"}},
		{name: "an explicit revoke step",
			lines: []string{"name: t", "trigger: revocation", "steps:", "  - id: sign", "    uses: revoke"}},
		{name: "a revoke step in an enrollment definition",
			lines: []string{"name: t", "trigger: enrollment", "steps:", "  - id: sign", "    uses: revoke"},
			err:   "the revoke step runs only in revocation workflows", step: "sign"},
		{name: "an issue step in a revocation definition",
			lines: []string{"name: t", "trigger: revocation", "steps:", "  - id: sign", "    uses: issue"},
			err:   "the issue step does not run in revocation workflows", step: "sign"},
		{name: "a with the revoke step does not take",
			lines: []string{"name: t", "trigger: revocation", "steps:", "  - id: sign", "    uses: revoke", "    with: {crl: false}"},
			err:   `unknown key "crl"`, step: "sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def, err := parse(defaultConfig(), tt.lines...)
			if tt.err != "" {
				wantLoadError(t, err, 0, tt.step, tt.err)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			last := def.Steps[len(def.Steps)-1]
			if last.Uses != workflow.RevokeStep || last.If != nil {
				t.Fatalf("steps %+v: want the revoke step last, unconditioned", def.Steps)
			}
		})
	}
}

func TestShippedRevocationDefinitionRevokesFirst(t *testing.T) {
	t.Parallel()
	set, err := workflow.Load(definitions.FS, steps.ForLint(defaultConfig()).Catalog())
	if err != nil {
		t.Fatal(err)
	}
	def, err := set.Select("revocation", &workflow.Env{})
	if err != nil || def.Name != "revocation-default" || def.Steps[0].Uses != workflow.RevokeStep {
		t.Fatalf("Select(revocation) = %v, %v", def, err)
	}
}

// fixture is what the issue and revoke steps use: a configuration, its
// built-in CA and a store on the test Redis.
type fixture struct {
	Config *config.Config
	CAs    *ca.Registry
	Store  *store.Store
}

// catalog is certflow's steps with the issue and revoke steps wired to
// the fixture (without CA subjects: policy does not know the CA's name).
func (f *fixture) catalog() workflow.Catalog {
	types := steps.ForLint(f.Config)
	types.Issue = steps.Issue{Config: f.Config, CAs: f.CAs, Store: f.Store}
	types.Revoke = steps.Revoke{CAs: f.CAs, Store: f.Store}
	return types.Catalog()
}

// revokeFixture is a built-in CA, a store on the test Redis and an issued
// certificate in it.
func revokeFixture(t *testing.T) (*fixture, *store.Certificate, *ca.Builtin) {
	t.Helper()
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	kek, err := pki.NewKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	reg, _, err := ca.OpenAll(cfg, kek, true)
	if err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testutil.Redis(t)
	st := store.New(rdb, prefix)
	ctx := context.Background()
	id, _ := st.NewID(ctx)
	now := time.Now().UTC()
	if _, _, err := st.Create(ctx, &store.Request{ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment"}, 0); err != nil {
		t.Fatal(err)
	}
	auth, _ := reg.Get(cfg.CAs[0].Name)
	csr := newCSR(t, "P-256", "revoke.example.com", "revoke.example.com")
	cert, _, err := st.IssueOnce(ctx, id, func(ctx context.Context) (*store.Certificate, error) {
		issued, err := auth.Issue(ctx, &ca.Request{Subject: csr.Subject, PublicKey: csr.PublicKey, DNSNames: csr.DNSNames, Validity: time.Hour})
		if err != nil {
			return nil, err
		}
		c := &store.Certificate{Chain: issued.Chain, SerialNumber: pki.SerialHex(issued.Leaf), Thumbprint: pki.Thumbprint(issued.Leaf.Raw),
			NotBefore: issued.Leaf.NotBefore, NotAfter: issued.Leaf.NotAfter, Authority: cfg.CAs[0].QualifiedName()}
		c.Describe(issued.Leaf)
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{Config: cfg, CAs: reg, Store: st}, cert, auth.(*ca.Builtin)
}

func TestRevokeStepIsIdempotentAndRefusesARevokedCertificate(t *testing.T) {
	t.Parallel()
	fx, cert, builtin := revokeFixture(t)
	def, err := workflow.Parse("def.yaml", []byte("name: t\ntrigger: revocation\nsteps:\n  - id: revoke\n    uses: revoke\n"), fx.catalog())
	if err != nil {
		t.Fatal(err)
	}
	eff := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	env := &workflow.Env{
		Request:   workflow.Request{Revocation: workflow.Revocation{CertificateId: cert.ID, Reason: 1, Comment: "stolen", EffectiveDate: eff, InvalidityDate: eff}},
		Requester: workflow.Requester{Name: "alice"},
	}
	run := func(requestID int64) (workflow.Result, error) {
		return def.Steps[0].Step.Run(context.Background(), &workflow.Run{RequestID: requestID, StepID: "revoke", Env: env, Log: nopLogger()})
	}
	ctx := context.Background()
	crlOf := func() *x509.RevocationList {
		c, err := fx.Store.CRL(ctx, builtin.Name())
		if err != nil {
			t.Fatal(err)
		}
		l, err := x509.ParseRevocationList(c.DER)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.CheckSignatureFrom(builtin.Issuing()); err != nil {
			t.Fatalf("CRL signature: %v", err)
		}
		return l
	}
	start := time.Now().UTC().Truncate(time.Second)
	res, err := run(50)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	first := crlOf()
	// Revoked when the step ran; the requester's earlier date is the
	// entry's invalidityDate.
	if len(first.RevokedCertificateEntries) != 1 || first.RevokedCertificateEntries[0].ReasonCode != 1 ||
		first.RevokedCertificateEntries[0].RevocationTime.Before(start) || first.RevokedCertificateEntries[0].RevocationTime.After(time.Now()) {
		t.Fatalf("CRL entries %+v, want one revoked since %s", first.RevokedCertificateEntries, start)
	}
	var invalidity time.Time
	for _, ext := range first.RevokedCertificateEntries[0].Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 24}) {
			asn1.UnmarshalWithParams(ext.Value, &invalidity, "generalized")
		}
	}
	if !invalidity.Equal(eff) {
		t.Fatalf("invalidityDate %s, want %s", invalidity, eff)
	}
	if res.Outputs["certificate"] != cert.ID {
		t.Errorf("outputs %v", res.Outputs)
	}
	// A re-run of the same request (a re-delivered task) succeeds without
	// revoking again; the CRL is published again with a higher number.
	if _, err := run(50); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	again := crlOf()
	if again.Number.Cmp(first.Number) <= 0 || len(again.RevokedCertificateEntries) != 1 {
		t.Fatalf("re-run CRL: number %s after %s, %d entries", again.Number, first.Number, len(again.RevokedCertificateEntries))
	}
	stored, _ := fx.Store.Certificate(ctx, cert.ID)
	if stored.Revocation == nil || stored.Revocation.RequestID != 50 || stored.Revocation.By != "alice" || stored.Revocation.Comment != "stolen" {
		t.Fatalf("revocation record %+v", stored.Revocation)
	}
	// Another request finds it revoked: denied.
	_, err = run(51)
	var deny *workflow.DenyError
	if !errors.As(err, &deny) {
		t.Fatalf("another request's revoke: %v, want a denial", err)
	}
}

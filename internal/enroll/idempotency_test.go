package enroll

import (
	"crypto/rand"
	"crypto/x509"
	"reflect"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

func testKEK(t testing.TB) *pki.KEK {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	k, err := pki.NewKEK(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fingerprinted is a submit as submitFingerprint sees it, every field of
// the request given.
func fingerprinted() *enrollment {
	return &enrollment{
		csr: &x509.CertificateRequest{RawTBSCertificateRequest: []byte("tbs")},
		req: store.Request{Trigger: workflow.TriggerEnrollment, Input: workflow.Request{
			ID: 7, Template: "WebServer", Format: "PEM", IncludeSubjectHeader: true,
			Metadata:                   map[string]string{"Team": "web", "Env": "Prod"},
			SANs:                       map[string][]string{"dns": {"a.example.com", "b.example.com"}, "ip4": {"10.0.0.1"}},
			AdditionalEnrollmentFields: map[string]any{"Ticket": "CHG-1"}, OwnerRoleId: 11, OwnerRoleName: "web-owners",
			CallbackUrl: "https://hooks.example.com/x", Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		}},
	}
}

// TestSubmitFingerprintCoversEveryField holds the fingerprint to every
// field of workflow.Request, present and future: changing any one changes
// it, but for the two a retry may change (ID, Timestamp). A field added to
// the request is covered without anyone remembering to.
func TestSubmitFingerprintCoversEveryField(t *testing.T) {
	t.Parallel()
	s := &Service{kek: testKEK(t)}
	ref := s.submitFingerprint(fingerprinted())
	if ref == "" || ref != s.submitFingerprint(fingerprinted()) {
		t.Fatalf("not deterministic: %q", ref)
	}
	ignored := map[string]bool{"ID": true, "Timestamp": true}
	typ := reflect.TypeFor[workflow.Request]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			e := fingerprinted()
			v := reflect.ValueOf(&e.req.Input).Elem().Field(i)
			change(t, v)
			if got := s.submitFingerprint(e); (got == ref) != ignored[f.Name] {
				t.Fatalf("changing %s: fingerprint changed %v, want %v", f.Name, got != ref, !ignored[f.Name])
			}
		})
	}
	for name, mutate := range map[string]func(e *enrollment){
		"the trigger":      func(e *enrollment) { e.req.Trigger = workflow.TriggerRenewal },
		"the CSR's TBS":    func(e *enrollment) { e.csr.RawTBSCertificateRequest = []byte("tbs2") },
		"no CSR (PFX)":     func(e *enrollment) { e.csr = &x509.CertificateRequest{} },
		"the PFX password": func(e *enrollment) { e.pfxPassword = "secret" },
	} {
		e := fingerprinted()
		mutate(e)
		if s.submitFingerprint(e) == ref {
			t.Errorf("changing %s left the fingerprint as it was", name)
		}
	}
	e := fingerprinted()
	e.req.Input.SANs["dns"] = []string{"b.example.com", "a.example.com"}
	if s.submitFingerprint(e) != ref {
		t.Error("the order of SAN values changed the fingerprint")
	}
	if (&Service{kek: testKEK(t)}).submitFingerprint(fingerprinted()) == ref {
		t.Error("another KEK gives the same fingerprint: it is not keyed")
	}
}

// change sets v (a field of workflow.Request) to another value.
func change(t *testing.T, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			m.SetMapIndex(k, v.MapIndex(k))
		}
		key := reflect.ValueOf("added")
		elem := reflect.New(v.Type().Elem()).Elem()
		switch elem.Kind() {
		case reflect.Slice:
			elem = reflect.ValueOf([]string{"added.example.com"})
		default:
			elem = reflect.ValueOf("added").Convert(v.Type().Elem())
		}
		m.SetMapIndex(key, elem)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if p.Elem().Kind() == reflect.Struct {
			p.Elem().Field(0).Set(reflect.ValueOf("x").Convert(p.Elem().Field(0).Type()))
		}
		v.Set(p)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Now()))
			return
		}
		f := v.Field(0)
		f.SetInt(f.Int() + 1)
	default:
		t.Fatalf("a field of kind %s: teach change about it", v.Kind())
	}
}

// BenchmarkSubmitFingerprint: the cost a submit with an Idempotency-Key
// pays (one per submit; none without a key).
func BenchmarkSubmitFingerprint(b *testing.B) {
	s := &Service{kek: testKEK(b)}
	e := fingerprinted()
	e.csr.RawTBSCertificateRequest = make([]byte, 400)
	for b.Loop() {
		s.submitFingerprint(e)
	}
}

package steps

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/workflow"
)

func twoCAConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Default()
	c.CAs = append(c.CAs, config.CA{Name: "SecondCA", Host: "certflow", Type: "builtin", KeyType: "ecdsa-p256", MaxValidity: time.Hour})
	c.Templates[0].CAs = []string{config.DefaultCAName, "SecondCA"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestPickAuthorityChoosesAmongTheTemplatesCAsAtRandom(t *testing.T) {
	t.Parallel()
	d := Issue{Config: twoCAConfig(t)}
	run := &workflow.Run{Env: &workflow.Env{Request: workflow.Request{Template: config.DefaultTemplate}}}
	counts := map[string]int{}
	const n = 200
	for range n {
		_, c, err := d.pickAuthority(run, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		counts[c.Name]++
	}
	// Each CA is picked with probability 1/2: fewer than 60 of 200 has a
	// probability below 1e-8.
	if counts[config.DefaultCAName] < 60 || counts["SecondCA"] < 60 || len(counts) != 2 {
		t.Fatalf("picks over %d requests: %v; want both CAs, about evenly", n, counts)
	}

	t.Run("a named CA is always the one used", func(t *testing.T) {
		run := &workflow.Run{Env: &workflow.Env{Request: workflow.Request{Template: config.DefaultTemplate, CertificateAuthority: `certflow\SecondCA`}}}
		for range 20 {
			if _, c, err := d.pickAuthority(run, nil, ""); err != nil || c.Name != "SecondCA" {
				t.Fatalf("picked %v (%v), want SecondCA", c, err)
			}
		}
	})
}

func TestCARequestCarriesTheEnrollmentFields(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "f.example.com"}}, key)
	csr, _ := x509.ParseCertificateRequest(der)
	tmpl := &config.Default().Templates[0]
	for _, tt := range []struct {
		name   string
		fields map[string]any
		want   map[string]string
	}{
		{"none given: none passed", nil, nil},
		{"the request's fields, as text", map[string]any{"Ticket": "CHG-1", "Zone": "dmz"}, map[string]string{"Ticket": "CHG-1", "Zone": "dmz"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run := &workflow.Run{CSR: csr, Env: &workflow.Env{Request: workflow.Request{AdditionalEnrollmentFields: maps.Clone(tt.fields)}}}
			r, err := caRequest(run, tmpl, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.EnrollmentFields, tt.want) {
				t.Fatalf("EnrollmentFields = %v, want %v", r.EnrollmentFields, tt.want)
			}
		})
	}
}

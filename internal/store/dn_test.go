package store_test

import (
	"testing"

	"github.com/certflow/certflow/internal/store"
)

// Download and Recover find a certificate by SerialNumber and IssuerDN,
// and searches compare DNs, in one normal form: Keyfactor's spacing, Go's, and either side's case
// name the same issuer; another issuer never matches.
func TestNormalizeDN(t *testing.T) {
	for _, tt := range []struct {
		name string
		a, b string
		want bool
	}{
		{"Go's form against Keyfactor's spaces after commas", "CN=Issuing CA,O=Example", "CN=Issuing CA, O=Example", true},
		{"spaces around the equals signs", "CN=Issuing CA,O=Example", "CN = Issuing CA , O = Example", true},
		{"a multi-valued RDN with spaces around the plus", "CN=a+OU=b,O=c", "CN=a + OU=b, O=c", true},
		{"case", "cn=issuing ca,o=example", "CN=Issuing CA,O=Example", true},
		{"another common name", "CN=Issuing CA,O=Example", "CN=Other CA,O=Example", false},
		{"attributes in another order", "CN=Issuing CA,O=Example", "O=Example,CN=Issuing CA", false},
		{"a space inside a value is kept", "CN=IssuingCA", "CN=Issuing CA", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.NormalizeDN(tt.a) == store.NormalizeDN(tt.b); got != tt.want {
				t.Errorf("NormalizeDN(%q) == NormalizeDN(%q): %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

package ca_test

import (
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/ca"
)

// A problem reads as the CA gave it, type, detail and each identifier's
// subproblem, and a CA cannot make it grow without end.
func TestAProblemReadsAsTheCAGaveItAndIsBounded(t *testing.T) {
	p := &ca.Problem{Type: "urn:ietf:params:acme:error:compound", Detail: "some identifiers failed", Subproblems: []ca.Subproblem{
		{Type: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "blocked", Identifier: "bad.example"},
	}}
	if got, want := p.Error(), "urn:ietf:params:acme:error:compound: some identifiers failed; bad.example: urn:ietf:params:acme:error:rejectedIdentifier: blocked"; got != want {
		t.Fatalf("Error() = %q\nwant %q", got, want)
	}
	if p.Refusal() {
		t.Fatal("a compound problem is not a refusal by itself")
	}
	if !(&ca.Problem{Type: "urn:ietf:params:acme:error:rejectedIdentifier"}).Refusal() || (&ca.Problem{Type: "urn:ietf:params:acme:error:connection"}).Refusal() {
		t.Fatal("rejectedIdentifier refuses; connection is a failed validation")
	}
	huge := &ca.Problem{Type: "t", Detail: strings.Repeat("é", 5000)}
	for range 1000 {
		huge.Subproblems = append(huge.Subproblems, ca.Subproblem{Type: "t", Detail: strings.Repeat("x", 5000), Identifier: "a.example"})
	}
	if n := len(huge.Error()); n > 8<<10 {
		t.Fatalf("a CA's huge problem renders as %d bytes", n)
	}
	if !strings.HasSuffix(huge.Error(), "; and 990 more") {
		t.Fatalf("the subproblems left out are not counted: …%s", huge.Error()[len(huge.Error())-40:])
	}
}

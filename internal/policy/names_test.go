package policy_test

import (
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/policy"
)

func TestIsDNSName(t *testing.T) {
	t.Parallel()
	label63 := strings.Repeat("a", 63)
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"a host name", "www.example.com", true},
		{"a single label", "localhost", true},
		{"upper case", "WWW.Example.COM", true},
		{"digits and inner hyphens", "xn--bcher-kva.example-1.com", true},
		{"a leading wildcard label", "*.example.com", true},
		{"a 63-character label", label63 + ".example.com", true},
		{"a 253-character name", strings.Repeat(label63+".", 3) + strings.Repeat("a", 61), true},
		{"empty", "", false},
		{"a bare wildcard", "*.", false},
		{"a wildcard alone", "*", false},
		{"a wildcard not leading", "www.*.example.com", false},
		{"a partial wildcard", "w*.example.com", false},
		{"two wildcards", "*.*.example.com", false},
		{"a 64-character label", strings.Repeat("a", 64) + ".example.com", false},
		{"a 254-character name", strings.Repeat(label63+".", 3) + strings.Repeat("a", 62), false},
		{"a leading hyphen", "-www.example.com", false},
		{"a trailing hyphen", "www-.example.com", false},
		{"an empty label", "www..example.com", false},
		{"a leading dot", ".example.com", false},
		{"a trailing dot", "example.com.", false},
		{"an underscore", "_acme-challenge.example.com", false},
		{"a space", "my server", false},
		{"a non-ASCII letter", "bücher.example.com", false},
		{"a port", "example.com:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := policy.IsDNSName(tt.in); got != tt.want {
				t.Errorf("IsDNSName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

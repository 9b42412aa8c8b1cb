package redact_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/redact"
)

func TestURLKeepsNoCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://hooks.example.com/pki", "https://hooks.example.com/pki"},
		{"https://user:pass@hooks.example.com/pki?token=secret#frag", "https://hooks.example.com/pki?…"},
		{"https://hooks.example.com/pki#secret", "https://hooks.example.com/pki"},
		{"http://127.0.0.1:8080/x?", "http://127.0.0.1:8080/x?…"},
		{"https://user@h.example.com", "https://h.example.com"},
		// url.Parse refuses these; the fallback still drops the secrets.
		{"https://user:pass@h.example.com:badport/x?token=secret", "https://h.example.com:badport/x?…"},
		{"https://us%zzer:pass@h.example.com/x#secret", "https://h.example.com/x"},
		{"mailto:a@example.com?subject=secret", "mailto:a@example.com?…"},
	} {
		got := redact.URL(tc.in)
		if got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "pass") {
			t.Errorf("URL(%q) = %q still holds a credential", tc.in, got)
		}
	}
}

func TestErrorRedactsTheClientsURLError(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens, so Do fails with a *url.Error
	// quoting the URL.
	_, err := http.Get("http://user:pass@127.0.0.1:1/x?token=secret")
	if err == nil {
		t.Skip("something answered on 127.0.0.1:1")
	}
	err = fmt.Errorf("call: %w", redact.Error(err))
	if s := err.Error(); strings.Contains(s, "secret") || strings.Contains(s, "pass") || !strings.Contains(s, "http://127.0.0.1:1/x?…") {
		t.Fatalf("redacted error = %q", s)
	}
	if redact.Error(nil) != nil {
		t.Fatal("Error(nil) != nil")
	}
	plain := errors.New("no URL here")
	if redact.Error(plain) != plain {
		t.Fatal("an error without a URL changed")
	}
}

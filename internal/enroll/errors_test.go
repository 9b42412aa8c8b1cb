package enroll

import (
	"testing"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
)

// TestErrorsNameTheirField: a refusal about a field carries the field
// apart and leads its message with it, as clients read it.
func TestErrorsNameTheirField(t *testing.T) {
	e := badField("SANs.dns[0]", "%q is not a DNS name", "a b")
	if e.Kind != Invalid || e.Code != keyfactor.CodeInvalidField || e.Field != "SANs.dns[0]" || e.Error() != `SANs.dns[0]: "a b" is not a DNS name` {
		t.Errorf("badField: %+v", e)
	}
	e = fieldError(NotFound, keyfactor.CodeNotFound, "CertID", "no such certificate")
	if e.Kind != NotFound || e.Field != "CertID" || e.Message != "CertID: no such certificate" {
		t.Errorf("fieldError: %+v", e)
	}
	if e := newError(Conflict, keyfactor.CodeConflict, "request %d: busy", 3); e.Field != "" || e.Message != "request 3: busy" {
		t.Errorf("newError: %+v", e)
	}
	e = tooMany(1400*time.Millisecond, "key generation: busy")
	if e.Kind != TooMany || e.Code != keyfactor.CodeRateLimited || e.RetryAfter != 1400*time.Millisecond || e.Message != "key generation: busy; retry after 1s" {
		t.Errorf("tooMany: %+v", e)
	}
}

package steps

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// RevokeUnreleased is Issue.revokeUnreleased, for the external tests.
func (is Issue) RevokeUnreleased(ctx context.Context, run *workflow.Run, auth ca.Authority, claim *store.IssueClaim, leaf []byte) bool {
	return is.revokeUnreleased(ctx, run, auth, claim, leaf)
}

// IssuedBy is issuedBy, for the external tests.
func IssuedBy(t *testing.T, pub any, tmpl x509.Certificate) *ca.Issued { return issuedBy(t, pub, tmpl) }

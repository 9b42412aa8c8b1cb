package enroll

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// errNoRetainedKey: the request keeps no private key.
var errNoRetainedKey = errors.New("no private key is retained for this certificate")

// retainedKey is the one way back to a request's (and so its
// certificate's) retained private key: Request.PrivateKey opened under the
// KEK with the request's associated data (pki.RequestKeyAAD). Whatever put
// the key there — a client's PrivateKey, a forceEnroll of a generated CSR,
// a PFX enrollment — it is read back here, for PFX answers and recovery.
// The key never goes to a log; callers return it only inside a
// password-protected PKCS#12.
func (s *Service) retainedKey(req *store.Request) (crypto.PrivateKey, []byte, error) {
	if len(req.PrivateKey) == 0 {
		return nil, nil, errNoRetainedKey
	}
	der, err := s.kek.Open(req.PrivateKey, pki.RequestKeyAAD(req.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("request %d: retained key: %w", req.ID, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("request %d: retained key does not parse: %w", req.ID, err)
	}
	return key, der, nil
}

// errKeyCompromised refuses a CSR whose public key is one a certificate
// was revoked for with reason keyCompromise (store.ErrKeyCompromised):
// such a key is never certified again, for anyone, on any path. The
// issue step checks again before signing (the revocation may come while
// the request waits).
var errKeyCompromised = fieldError(Invalid, keyfactor.CodePolicy, "CSR", "its key was revoked for key compromise and is never certified again; generate a new key")

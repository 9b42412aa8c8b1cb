package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
)

// PeekLeaf reads a certificate download's answer (PEM, leaf first) for a
// proxy in front of an ACME server, leaves the body for the client to
// read as it was, and returns its leaf (nil when it holds none).
func PeekLeaf(resp *http.Response) (*x509.Certificate, error) {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	b, _ := pem.Decode(body)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil
	}
	leaf, _ := x509.ParseCertificate(b.Bytes)
	return leaf, nil
}

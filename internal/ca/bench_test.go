package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
)

// BenchmarkBuiltinIssue is the signing cost the workflow engine's overhead
// (workflow.BenchmarkEngineRun) is compared against, with the hand-built
// leaf encoder (speed.leaf_encoder) and with x509 building every leaf: the
// ratio of the two is what the shortcut is worth.
func BenchmarkBuiltinIssue(b *testing.B) {
	for _, keyType := range []string{"ecdsa-p256", "rsa-2048"} {
		for _, encoder := range []bool{true, false} {
			name := keyType + "/x509"
			if encoder {
				name = keyType + "/leaf_encoder"
			}
			b.Run(name, func(b *testing.B) { benchmarkIssue(b, keyType, encoder) })
		}
	}
}

func benchmarkIssue(b *testing.B, keyType string, encoder bool) {
	raw := make([]byte, 32)
	rand.Read(raw)
	c, _, err := ca.OpenBuiltin(b.TempDir(), "Bench", keyType, mustKEK(b, raw), true, ca.LeafEncoder(encoder))
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// As an enrollment asks: the CSR's subject, byte for byte.
	subject := pkix.Name{CommonName: "bench.example.com"}
	rawSubject, _ := asn1.Marshal(subject.ToRDNSequence())
	req := &ca.Request{Subject: subject, RawSubject: rawSubject, PublicKey: key.Public(),
		DNSNames: []string{"bench.example.com"}, Validity: 24 * time.Hour, KeyUsage: x509.KeyUsageDigitalSignature}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Issue(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
)

func testKEK(t *testing.T) *pki.KEK {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	kek, err := pki.NewKEK(raw)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// encoderRequest is a request of the usual leaf shape (the CSR's subject
// bytes, every kind of SAN, a CRL distribution point), which the
// hand-built encoder builds when it is on.
func encoderRequest(t *testing.T) *Request {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	subject := pkix.Name{CommonName: "svc.example.com", Organization: []string{"Example"}}
	raw, err := asn1.Marshal(subject.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	return &Request{
		Subject: subject, RawSubject: raw, PublicKey: key.Public(), Validity: 24 * time.Hour,
		DNSNames: []string{"svc.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::7")},
		Emails: []string{"ops@example.com"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/svc"}},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: []string{"http://pki.example.com/CRL/Switch.crl"},
	}
}

// issueGood issues req from b and checks what crypto/x509 says of it:
// it chains to b's root for its purpose and its signature verifies.
func issueGood(t *testing.T, b *Builtin, req *Request) *x509.Certificate {
	t.Helper()
	issued, err := b.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(b.Root())
	inters.AddCert(b.Issuing())
	if _, err := issued.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("the issued certificate does not verify: %v", err)
	}
	return issued.Leaf
}

// sameButSerial fails unless a and b are the same certificate but for
// their serials, signatures and (issued moments apart) validity.
func sameButSerial(t *testing.T, a, b *x509.Certificate) {
	t.Helper()
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"version", a.Version, b.Version},
		{"signature algorithm", a.SignatureAlgorithm, b.SignatureAlgorithm},
		{"issuer", a.RawIssuer, b.RawIssuer},
		{"subject", a.RawSubject, b.RawSubject},
		{"public key", a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo},
		{"extensions", a.Extensions, b.Extensions},
		{"validity", a.NotAfter.Sub(a.NotBefore), b.NotAfter.Sub(b.NotBefore)},
	} {
		if !reflect.DeepEqual(f.a, f.b) {
			t.Errorf("%s: %v, and %v", f.name, f.a, f.b)
		}
	}
	if d := a.NotBefore.Sub(b.NotBefore).Abs(); d > 5*time.Second {
		t.Errorf("issued %s apart", d)
	}
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 {
		t.Error("the same serial twice")
	}
}

// opensslText is `openssl x509 -noout -text` of der, without the serial,
// the validity and the signature value, which differ from one issue to
// the next.
func opensslText(t *testing.T, openssl string, der []byte) string {
	t.Helper()
	cmd := exec.Command(openssl, "x509", "-inform", "DER", "-noout", "-text")
	cmd.Stdin = bytes.NewReader(der)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	var kept []string
	inSerial := false
	for line := range strings.Lines(string(out)) {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "Signature Value:"):
			return strings.Join(kept, "")
		case strings.HasPrefix(trimmed, "Serial Number:"):
			inSerial = strings.HasSuffix(trimmed, ":")
			continue
		case inSerial && strings.Trim(trimmed, "0123456789abcdef:") == "":
			continue
		case strings.HasPrefix(trimmed, "Not Before") || strings.HasPrefix(trimmed, "Not After"):
			continue
		}
		inSerial = false
		kept = append(kept, line)
	}
	t.Fatalf("openssl x509 printed no signature value:\n%s", out)
	return ""
}

// speed.leaf_encoder off: x509 builds every certificate, and they are the
// certificates the hand-built encoder makes, to crypto/x509 and to
// OpenSSL alike.
func TestLeafEncoderOffIssuesTheSameCertificates(t *testing.T) {
	t.Parallel()
	for _, keyType := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			dir, kek := t.TempDir(), testKEK(t)
			on, _, err := OpenBuiltin(dir, "Switch", keyType, kek, true, LeafEncoder(true))
			if err != nil {
				t.Fatal(err)
			}
			off, _, err := OpenBuiltin(dir, "Switch", keyType, kek, true, LeafEncoder(false))
			if err != nil {
				t.Fatal(err)
			}
			req := encoderRequest(t)
			if got := pathOf(on, req); got != pathLeafTBS {
				t.Fatalf("switch on: %q", got)
			}
			if got := pathOf(off, req); got != pathX509TBS {
				t.Fatalf("switch off: %q", got)
			}
			a, b := issueGood(t, on, req), issueGood(t, off, req)
			sameButSerial(t, a, b)
			if keyType != "ecdsa-p256" {
				return
			}
			openssl, err := exec.LookPath("openssl")
			if err != nil {
				t.Skip("no openssl on PATH")
			}
			if ta, tb := opensslText(t, openssl, a.Raw), opensslText(t, openssl, b.Raw); ta != tb {
				t.Errorf("openssl sees two certificates:\n%s\n\n%s", ta, tb)
			}
		})
	}
}

// OpenAll takes the switch from the configuration.
func TestOpenAllFollowsSpeedLeafEncoder(t *testing.T) {
	t.Parallel()
	kek := testKEK(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	for _, on := range []bool{true, false} {
		cfg.Speed.LeafEncoder = on
		reg, _, err := OpenAll(&cfg, kek, true)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := reg.Get(config.DefaultCAName)
		if b := a.(*Builtin); (b.enc.leaf != nil) != on || b.enc.capture == nil {
			t.Errorf("speed.leaf_encoder %v: hand-built %v, capture %v", on, b.enc.leaf != nil, b.enc.capture != nil)
		}
	}
}

// A shortcut that fails the start-up check is off for the life of the CA,
// said once as an error, and the CA still issues good certificates: a
// hand-built encoder that makes other bytes than x509 or declines the
// usual leaf, a capture that x509 no longer hands the TBSCertificate.
func TestSelfCheckFallsBackToX509(t *testing.T) {
	t.Parallel()
	otherBytes := func(tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) ([]byte, []byte, crypto.SignerOpts, bool) {
		tbs, alg, opts, ok := leafTBS(tmpl, parent, pub, signer)
		if ok {
			tbs = bytes.Clone(tbs)
			tbs[len(tbs)-1] ^= 1 // the last letter of the CRL distribution point
		}
		return tbs, alg, opts, ok
	}
	declines := func(*x509.Certificate, *x509.Certificate, any, crypto.Signer) ([]byte, []byte, crypto.SignerOpts, bool) {
		return nil, nil, nil, false
	}
	notHandedOver := func(io.Reader, *x509.Certificate, *x509.Certificate, any, crypto.Signer) ([]byte, []byte, crypto.SignerOpts, error) {
		return nil, nil, nil, errNotHandedOver
	}
	tests := []struct {
		name string
		enc  encoder
		// left is what the check leaves on: hand-built, capture.
		leaf, capture bool
	}{
		{"hand-built encoder makes other bytes", encoder{leaf: otherBytes, capture: captureTBS}, false, true},
		{"hand-built encoder declines the usual leaf", encoder{leaf: declines, capture: captureTBS}, false, true},
		{"x509 does not hand over the TBSCertificate", encoder{leaf: leafTBS, capture: notHandedOver}, true, false},
		{"both", encoder{leaf: otherBytes, capture: notHandedOver}, false, false},
		{"switch off, no TBSCertificate handed over", encoder{capture: notHandedOver}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			b, _, err := OpenBuiltin(t.TempDir(), "Checked", "ecdsa-p256", testKEK(t), true, withEncoder(tt.enc), Logger(log))
			if err != nil {
				t.Fatal(err)
			}
			if (b.enc.leaf != nil) != tt.leaf || (b.enc.capture != nil) != tt.capture {
				t.Fatalf("left on: hand-built %v, capture %v; want %v, %v", b.enc.leaf != nil, b.enc.capture != nil, tt.leaf, tt.capture)
			}
			if n := strings.Count(logs.String(), "level=ERROR"); n != 1 || strings.Count(logs.String(), "\n") != 1 {
				t.Fatalf("%d errors logged, want one:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "ca=Checked") {
				t.Errorf("the error does not name the CA: %s", logs.String())
			}
			req := encoderRequest(t)
			leaf := issueGood(t, b, req)
			der, err := x509.CreateCertificate(rand.Reader, b.leafTemplate(req, leaf.SerialNumber, leaf.NotBefore.Add(backdate)), b.issuer, req.PublicKey, b.signer)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := x509.ParseCertificate(der); !bytes.Equal(leaf.RawTBSCertificate, want.RawTBSCertificate) {
				t.Error("the issued certificate is not what x509 would have signed")
			}
			notRaw := encoderRequest(t)
			notRaw.RawSubject = nil // not the usual shape: x509 builds it, on whichever path is left
			issueGood(t, b, notRaw)
		})
	}
}

// A CA whose shortcuts pass the check keeps them and says nothing.
func TestSelfCheckPassesQuietly(t *testing.T) {
	t.Parallel()
	for _, keyType := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		var logs bytes.Buffer
		b, _, err := OpenBuiltin(t.TempDir(), "Quiet", keyType, testKEK(t), true, Logger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		if b.enc.leaf == nil || b.enc.capture == nil || logs.Len() != 0 {
			t.Errorf("%s: hand-built %v, capture %v, logged %q", keyType, b.enc.leaf != nil, b.enc.capture != nil, logs.String())
		}
	}
}

// A CA key the shortcuts do not serve (Ed25519) gives the check nothing
// to say: x509.CreateCertificate signs with it whatever the encoder.
func TestSelfCheckLeavesOtherKeysAlone(t *testing.T) {
	t.Parallel()
	root, iss, key := testHierarchy(t, "Edwards", "ed25519")
	b := testBuiltin(t, "Edwards", root, iss, key)
	if enc, problems := b.checkEncoder(handEncoder); enc.leaf == nil || enc.capture == nil || len(problems) > 0 {
		t.Fatalf("hand-built %v, capture %v, problems %q", enc.leaf != nil, enc.capture != nil, problems)
	}
	issueGood(t, b, encoderRequest(t))
}

// x509 hashing the TBSCertificate itself and asking for a signature of
// the digest is the capture's failure, not a signer's.
func TestCaptureRefusesADigest(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &tbsCapture{signer: key}
	if _, err := c.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, errNotHandedOver) {
		t.Fatalf("Sign: %v, want errNotHandedOver", err)
	}
}

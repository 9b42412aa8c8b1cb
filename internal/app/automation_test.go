package app_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	enrollsvc "github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// issueFor enrolls a certificate for alice and returns its id.
func issueFor(t *testing.T, cf *testutil.Certflow, cn string, dns ...string) int64 {
	t.Helper()
	csr, _ := testutil.CSR(t, cn, dns...)
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "web"}}), "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll %s: %d %s", cn, resp.Status, resp.Body)
	}
	return er.CertificateInformation.KeyfactorID
}

// fire appends an event to the log (as an external sender's or the
// expiry watch's would be) and waits for definition def's run of it to
// settle, which it returns.
func fire(t *testing.T, cf *testutil.Certflow, ev workflow.Event, def string) *store.Request {
	t.Helper()
	ctx := context.Background()
	if ev.Source == "" {
		ev.Source = "test"
	}
	id, _, err := cf.App.Store.AppendEvent(ctx, ev, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var runID int64
	waitFor(t, def+"'s run of "+ev.Name, func() bool {
		runs, _ := cf.App.Store.EventRuns(ctx, id)
		runID = runs[def]
		return runID != 0
	})
	var run *store.Request
	waitFor(t, "the run to settle", func() bool {
		run, _ = cf.App.Store.Get(ctx, runID)
		return run != nil && run.Disposition.Final()
	})
	return run
}

// settled waits for request id to settle.
func settled(t *testing.T, cf *testutil.Certflow, id int64) *store.Request {
	t.Helper()
	var r *store.Request
	waitFor(t, fmt.Sprintf("request %d to settle", id), func() bool {
		r, _ = cf.App.Store.Get(context.Background(), id)
		return r != nil && r.Disposition.Final()
	})
	return r
}

func outputID(t *testing.T, run *store.Request, step, name string) int64 {
	t.Helper()
	var id int64
	if _, err := fmt.Sscan(fmt.Sprint(run.Instance.Outputs[step][name]), &id); err != nil {
		t.Fatalf("steps.%s.%s = %v: %v", step, name, run.Instance.Outputs[step][name], err)
	}
	return id
}

const rotateDef = `name: rotate
trigger: event:cert.rotate
steps:
  - id: renew
    uses: renew
  - id: mark
    uses: metadata
    if: steps.renew.request != 0
    with:
      certificate: steps.renew.certificate
      set:
        RenewedBy: "${{ event.Name }}"
`

func TestAnEventRenewsItsCertificateOnceWithTheSameKey(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"rotate.yaml": rotateDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	ctx := context.Background()
	oldID := issueFor(t, cf, "rotate.example.com", "rotate.example.com")

	run := fire(t, cf, workflow.Event{Name: "cert.rotate", CertificateID: oldID}, "rotate")
	if run.Disposition != store.Completed {
		t.Fatalf("run %s: %s", run.Disposition, run.Message)
	}
	reqID := outputID(t, run, "renew", "request")
	renewal := settled(t, cf, reqID)
	if renewal.Disposition != store.Issued {
		t.Fatalf("renewal %s: %s", renewal.Disposition, renewal.Message)
	}
	if renewal.Trigger != workflow.TriggerRenewal || renewal.Requester.Name != "alice" || renewal.EventDepth != 1 || renewal.Input.RenewalCertificateId != oldID {
		t.Fatalf("renewal: trigger %s, requester %s, depth %d, renews %d", renewal.Trigger, renewal.Requester.Name, renewal.EventDepth, renewal.Input.RenewalCertificateId)
	}
	oldCert, _ := cf.App.Store.Certificate(ctx, oldID)
	newCert, err := renewal.Certificate()
	if err != nil || newCert == nil {
		t.Fatalf("renewal certificate: %v", err)
	}
	oldLeaf, _ := x509.ParseCertificate(oldCert.Chain[0])
	newLeaf, _ := x509.ParseCertificate(newCert.Chain[0])
	if !bytes.Equal(oldLeaf.RawSubjectPublicKeyInfo, newLeaf.RawSubjectPublicKeyInfo) || !bytes.Equal(oldLeaf.RawSubject, newLeaf.RawSubject) {
		t.Fatal("the renewal with the retained key certified another key or subject")
	}
	if by, _ := cf.App.Store.SupersededBy(ctx, oldID); by != newCert.ID {
		t.Fatalf("certificate %d superseded by %d, want %d", oldID, by, newCert.ID)
	}
	renewed := eventsNamed(t, cf, workflow.EventCertificateRenewed)
	if len(renewed) != 1 || renewed[0].Depth != 1 {
		t.Fatalf("certificate.renewed events %+v: want one of depth 1", renewed)
	}
	if r, _ := cf.App.Store.Get(ctx, oldID); r.Metadata()["RenewedBy"] != "cert.rotate" {
		t.Fatalf("old certificate's metadata %v: want RenewedBy from the metadata step", r.Metadata())
	}

	// A late duplicate: the certificate is superseded, nothing is renewed.
	again := fire(t, cf, workflow.Event{Name: "cert.rotate", CertificateID: oldID}, "rotate")
	if again.Disposition != store.Completed || fmt.Sprint(again.Instance.Outputs["renew"]["skipped"]) != fmt.Sprintf("superseded by %d", newCert.ID) {
		t.Fatalf("second run %s %q: outputs %v", again.Disposition, again.Message, again.Instance.Outputs["renew"])
	}
	if n, _ := cf.Redis.ZCard(ctx, cf.Prefix+":certificates").Result(); n != 2 {
		t.Fatalf("%d certificates, want the old and its one renewal", n)
	}
}

const decommissionDef = `name: decommission
trigger: event:host.decommissioned
steps:
  - id: revoke
    uses: revoke
    with:
      query: 'SAN -eq "${{ event.Data.host }}"'
      reason: cessationOfOperation
      comment: "host ${{ event.Data.host }} decommissioned"
`

func TestAnExternalEventRevokesEveryCertificateNamingTheHostAndNoOther(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"decommission.yaml": decommissionDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir; withEventUsers(c) })
	ctx := context.Background()
	gone1 := issueFor(t, cf, "a.gone.example.com", "gone.example.com")
	gone2 := issueFor(t, cf, "b.gone.example.com", "gone.example.com", "b.gone.example.com")
	stay := issueFor(t, cf, "stay.example.com", "stay.example.com", "notgone.example.com")

	// A value that tries to widen the query is refused before any search.
	hostile := fire(t, cf, workflow.Event{Name: "host.decommissioned", Data: map[string]any{"host": `x" AND CertState -ne "9`}}, "decommission")
	if hostile.Disposition != store.Failed {
		t.Fatalf("hostile run %s %q, want FAILED", hostile.Disposition, hostile.Message)
	}

	// The CMDB posts the event, twice with one Id: one event, one run.
	var posted workflow.Event
	for i := range 2 {
		resp := cf.Do(t, "POST", "/Events", map[string]any{"Name": "host.decommissioned", "Id": "chg-77", "Data": map[string]any{"host": "gone.example.com"}}, asUser(publisherToken)...)
		if resp.Status != http.StatusCreated && resp.Status != http.StatusOK {
			t.Fatalf("post %d: %d %s", i, resp.Status, resp.Body)
		}
		var ev workflow.Event
		resp.JSON(t, &ev)
		if i > 0 && ev.ID != posted.ID {
			t.Fatalf("the repeated Id made event %s, the first %s", ev.ID, posted.ID)
		}
		posted = ev
	}
	var runID int64
	waitFor(t, "the decommission run", func() bool {
		runs, _ := cf.App.Store.EventRuns(ctx, posted.ID)
		runID = runs["decommission"]
		return runID != 0
	})
	run := settled(t, cf, runID)
	if run.Disposition != store.Completed {
		t.Fatalf("run %s: %s", run.Disposition, run.Message)
	}
	out := run.Instance.Outputs["revoke"]
	if fmt.Sprint(out["matched"]) != "2" {
		t.Fatalf("outputs %v: want 2 matches", out)
	}
	reqs, _ := out["requests"].([]any)
	if len(reqs) != 2 {
		t.Fatalf("outputs %v: want two revocation requests", out)
	}
	for _, v := range reqs {
		var id int64
		fmt.Sscan(fmt.Sprint(v), &id)
		r := settled(t, cf, id)
		if r.Disposition != store.Revoked || r.Requester.Name != steps.Actor || r.EventDepth != 1 || r.Input.Revocation.Reason != 5 {
			t.Fatalf("revocation %d: %s %q by %s depth %d reason %d", id, r.Disposition, r.Message, r.Requester.Name, r.EventDepth, r.Input.Revocation.Reason)
		}
	}
	for _, id := range []int64{gone1, gone2} {
		if c, _ := cf.App.Store.Certificate(ctx, id); c.Revocation == nil {
			t.Fatalf("certificate %d naming the host is not revoked", id)
		}
	}
	if c, _ := cf.App.Store.Certificate(ctx, stay); c.Revocation != nil {
		t.Fatalf("certificate %d, naming another host, was revoked", stay)
	}
	revoked := eventsNamed(t, cf, workflow.EventCertificateRevoked)
	if len(revoked) != 2 || revoked[0].Depth != 1 || revoked[1].Depth != 1 {
		t.Fatalf("certificate.revoked events %+v: want two of depth 1 (the revocation's EventDepth)", revoked)
	}

	// The same event again: every match is revoked already; no request.
	again := fire(t, cf, workflow.Event{Name: "host.decommissioned", Data: map[string]any{"host": "gone.example.com"}}, "decommission")
	if again.Disposition != store.Completed || len(again.Instance.Outputs["revoke"]["requests"].([]any)) != 0 {
		t.Fatalf("second run %s %q: %v", again.Disposition, again.Message, again.Instance.Outputs["revoke"])
	}
}

// automation is an enrollment service's Automation over cf's store.
func automation(cf *testutil.Certflow) *enrollsvc.Automation {
	a := cf.App
	return enrollsvc.New(enrollsvc.Options{Config: a.Config, Store: a.Store, Queue: a.Queue, KEK: a.KEK, Log: a.Log, Definitions: &a.Defs}).Automation()
}

func TestAutomationMakesOneRequestPerOrigin(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	act := automation(cf)
	certID := issueFor(t, cf, "once.example.com", "once.example.com")
	origin := steps.Origin{RunID: 900001, Step: "renew", Depth: 2}

	first, err := act.Renew(ctx, steps.RenewOrder{Origin: origin, CertificateID: certID})
	if err != nil || first.RequestID == 0 || first.Existing {
		t.Fatalf("Renew: %+v %v", first, err)
	}
	second, err := act.Renew(ctx, steps.RenewOrder{Origin: origin, CertificateID: certID})
	if err != nil || second.RequestID != first.RequestID || !second.Existing {
		t.Fatalf("a repeat made %+v (%v), want the first request %d", second, err, first.RequestID)
	}
	r := settled(t, cf, first.RequestID)
	if r.EventDepth != 2 || r.Requester.Name != "alice" || r.IdempotencyKey != origin.Key(certID) {
		t.Fatalf("renewal: depth %d requester %s key %q", r.EventDepth, r.Requester.Name, r.IdempotencyKey)
	}
	// Another run: the certificate is superseded now.
	other, err := act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 900002, Step: "renew", Depth: 1}, CertificateID: certID})
	if err != nil || other.RequestID != 0 || !strings.HasPrefix(other.Skipped, "superseded by ") {
		t.Fatalf("renewing a superseded certificate: %+v %v", other, err)
	}

	// Revocation: once per origin, then skipped as revoked.
	victim := issueFor(t, cf, "victim.example.com", "victim.example.com")
	ro := steps.RevokeOrder{Origin: steps.Origin{RunID: 900003, Step: "revoke", Depth: 1}, CertificateID: victim, Reason: 1, Comment: "test"}
	rv1, err := act.Revoke(ctx, ro)
	if err != nil || rv1.RequestID == 0 {
		t.Fatalf("Revoke: %+v %v", rv1, err)
	}
	rv2, err := act.Revoke(ctx, ro)
	if err != nil || rv2.RequestID != rv1.RequestID || !rv2.Existing {
		t.Fatalf("a repeated revocation made %+v (%v), want request %d", rv2, err, rv1.RequestID)
	}
	if r := settled(t, cf, rv1.RequestID); r.Disposition != store.Revoked {
		t.Fatalf("revocation %s %q", r.Disposition, r.Message)
	}
	rv3, err := act.Revoke(ctx, steps.RevokeOrder{Origin: steps.Origin{RunID: 900004, Step: "revoke"}, CertificateID: victim, Comment: "again"})
	if err != nil || rv3.RequestID != 0 || !strings.HasPrefix(rv3.Skipped, "revoked already") {
		t.Fatalf("revoking a revoked certificate: %+v %v", rv3, err)
	}
	// A revoked certificate is not renewed.
	rn, err := act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 900005, Step: "renew"}, CertificateID: victim})
	if err != nil || rn.RequestID != 0 || !strings.HasPrefix(rn.Skipped, "revoked") {
		t.Fatalf("renewing a revoked certificate: %+v %v", rn, err)
	}
}

func TestAutomationRefusals(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	act := automation(cf)
	certID := issueFor(t, cf, "refuse.example.com", "refuse.example.com", "shared.example.com")
	issueFor(t, cf, "refuse2.example.com", "shared.example.com")
	o := steps.Origin{RunID: 910001, Step: "s"}
	permanent := func(t *testing.T, err error, says string) {
		t.Helper()
		var perm *workflow.PermanentError
		if err == nil || !errors.As(err, &perm) || !strings.Contains(err.Error(), says) {
			t.Fatalf("error %v: want a permanent one saying %q", err, says)
		}
	}
	_, err := act.Renew(ctx, steps.RenewOrder{Origin: o, CertificateID: certID, NewKey: true})
	permanent(t, err, "key_retention")
	_, err = act.Renew(ctx, steps.RenewOrder{Origin: o, CertificateID: 987654321})
	permanent(t, err, "certificate 987654321: not found")
	_, err = act.Revoke(ctx, steps.RevokeOrder{Origin: o, CertificateID: certID, Reason: 9, Comment: "x"})
	permanent(t, err, "Reason")
	_, err = act.Enroll(ctx, steps.EnrollOrder{Origin: o, Template: config.DefaultTemplate, Subject: "CN=gen.example.com"})
	permanent(t, err, "key_retention")
	_, err = act.Enroll(ctx, steps.EnrollOrder{Origin: o, Template: config.DefaultTemplate, CSR: "not a CSR"})
	permanent(t, err, "CSR")
	_, err = act.SetMetadata(ctx, steps.MetadataOrder{Origin: o, CertificateID: 987654321, Values: map[string]string{"Team": "x"}})
	permanent(t, err, "not found")

	var tm *steps.TooManyError
	if _, err := act.FindCertificates(ctx, `SAN -eq "shared.example.com"`, 1); !errors.As(err, &tm) {
		t.Fatalf("a query over the bound: %v, want a TooManyError", err)
	}
	ids, err := act.FindCertificates(ctx, `SAN -eq "refuse.example.com"`, 100)
	if err != nil || len(ids) != 1 || ids[0] != certID {
		t.Fatalf("FindCertificates = %v %v, want [%d]", ids, err, certID)
	}
	_, err = act.FindCertificates(ctx, `Nope -eq "x"`, 100)
	permanent(t, err, `unknown field "Nope"`)
	if reqs, _ := cf.Redis.ZCard(ctx, cf.Prefix+":certificates").Result(); reqs != 2 {
		t.Fatalf("%d certificates: a refusal made something", reqs)
	}
}

func TestAutomationEnrollsAndEditsMetadata(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	act := automation(cf)
	csr, _ := testutil.CSR(t, "auto.example.com", "auto.example.com")
	order := steps.EnrollOrder{Origin: steps.Origin{RunID: 920001, Step: "enroll", Depth: 1}, Template: config.DefaultTemplate,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), Metadata: map[string]string{"Team": "ops"}}
	first, err := act.Enroll(ctx, order)
	if err != nil || first.RequestID == 0 {
		t.Fatalf("Enroll: %+v %v", first, err)
	}
	again, err := act.Enroll(ctx, order)
	if err != nil || again.RequestID != first.RequestID || !again.Existing {
		t.Fatalf("a repeated enrollment made %+v (%v)", again, err)
	}
	r := settled(t, cf, first.RequestID)
	if r.Disposition != store.Issued || r.Requester.Name != steps.Actor || r.EventDepth != 1 || r.Trigger != workflow.TriggerEnrollment {
		t.Fatalf("enrollment %s %q by %s depth %d trigger %s", r.Disposition, r.Message, r.Requester.Name, r.EventDepth, r.Trigger)
	}
	mo := steps.MetadataOrder{Origin: steps.Origin{RunID: 920002, Step: "md"}, CertificateID: first.RequestID, Values: map[string]string{"Team": "platform", "Workflow": "automation"}}
	res, err := act.SetMetadata(ctx, mo)
	if err != nil || res.Skipped != "" {
		t.Fatalf("SetMetadata: %+v %v", res, err)
	}
	res, err = act.SetMetadata(ctx, mo)
	if err != nil || res.Skipped != "unchanged" {
		t.Fatalf("a repeated edit: %+v %v, want it unchanged", res, err)
	}
	stored, _ := cf.App.Store.Get(ctx, first.RequestID)
	if md := stored.Metadata(); md["Team"] != "platform" || md["Workflow"] != "automation" {
		t.Fatalf("metadata %v", md)
	}
}

const renewalWithApproval = `name: renewal-approved
trigger: renewal
steps:
  - id: gate
    uses: approval
  - id: issue
    uses: issue
`

func TestAutomationMakesNoSecondRenewalWhileTheFirstWaits(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"renewal-default.yaml": renewalWithApproval})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	ctx := context.Background()
	act := automation(cf)
	certID := issueFor(t, cf, "wait.example.com", "wait.example.com")
	first, err := act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 930001, Step: "renew", Depth: 1}, CertificateID: certID})
	if err != nil || first.RequestID == 0 {
		t.Fatalf("Renew: %+v %v", first, err)
	}
	waitFor(t, "the renewal to wait for approval", func() bool {
		r, _ := cf.App.Store.Get(ctx, first.RequestID)
		return r != nil && r.Disposition == store.Pending
	})
	// The next threshold's event, another run: the renewal waiting is enough.
	second, err := act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 930002, Step: "renew", Depth: 1}, CertificateID: certID})
	if err != nil || second.RequestID != 0 || second.Skipped != fmt.Sprintf("being renewed by request %d", first.RequestID) {
		t.Fatalf("a second renewal while the first waits: %+v %v", second, err)
	}

	// A renewal its owner asked for by hand, waiting too, is enough as
	// well: automation does not put a second one beside it.
	other := issueFor(t, cf, "hand.example.com", "hand.example.com")
	handCSR, _ := testutil.CSR(t, "hand.example.com", "hand.example.com")
	resp, rr := renew(t, cf, map[string]any{"CertificateId": other, "CSR": base64.StdEncoding.EncodeToString(handCSR)}, "Authorization", bearer(testutil.AliceToken), "x-certificateformat", "PEM", "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted && resp.Status != http.StatusOK {
		t.Fatalf("renewal by hand: %d %s", resp.Status, resp.Body)
	}
	waitFor(t, "the renewal by hand to wait for approval", func() bool {
		r, _ := cf.App.Store.Get(ctx, rr.KeyfactorRequestId)
		return r != nil && r.Disposition == store.Pending
	})
	third, err := act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 930003, Step: "renew", Depth: 1}, CertificateID: other})
	if err != nil || third.RequestID != 0 || third.Skipped != fmt.Sprintf("being renewed by request %d", rr.KeyfactorRequestId) {
		t.Fatalf("an automated renewal beside one asked for by hand: %+v %v", third, err)
	}
}

func TestAutomationRenewsWithTheRetainedKeyOrANewRetainedOne(t *testing.T) {
	t.Parallel()
	cf := retainingCertflow(t)
	ctx := context.Background()
	act := automation(cf)
	issueRetained := func(cn string) int64 {
		csr, key := testutil.CSR(t, cn, cn)
		pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{
			"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8),
		}), "Authorization", bearer(testutil.AliceToken))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
		}
		return er.CertificateInformation.KeyfactorID
	}
	spki := func(id int64) []byte {
		c, err := cf.App.Store.Certificate(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Chain[0])
		return leaf.RawSubjectPublicKeyInfo
	}
	for _, newKey := range []bool{false, true} {
		old := issueRetained(fmt.Sprintf("retained-%t.example.com", newKey))
		o, err := act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 940000, Step: fmt.Sprint(newKey)}, CertificateID: old, NewKey: newKey})
		if err != nil || o.RequestID == 0 {
			t.Fatalf("Renew(new key %t): %+v %v", newKey, o, err)
		}
		r := settled(t, cf, o.RequestID)
		c, _ := r.Certificate()
		if r.Disposition != store.Issued || c == nil {
			t.Fatalf("renewal %s %q", r.Disposition, r.Message)
		}
		if same := bytes.Equal(spki(old), spki(c.ID)); same == newKey {
			t.Fatalf("new key %t: the renewal certified the same key: %t", newKey, same)
		}
		// The renewal retains the key its certificate certifies.
		der, err := cf.App.KEK.Open(r.PrivateKey, []byte(fmt.Sprintf("certflow-request/%d", r.ID)))
		if err != nil {
			t.Fatalf("new key %t: the renewal retains no key: %v", newKey, err)
		}
		key, _ := x509.ParsePKCS8PrivateKey(der)
		pub, _ := x509.MarshalPKIXPublicKey(key.(interface{ Public() crypto.PublicKey }).Public())
		if !bytes.Equal(pub, spki(c.ID)) {
			t.Fatalf("new key %t: the retained key is not the certified one", newKey)
		}
	}
}

func TestAutomationEnrollsAGeneratedKeyWhereTheTemplateRetainsIt(t *testing.T) {
	t.Parallel()
	cf := retainingCertflow(t)
	ctx := context.Background()
	act := automation(cf)
	order := steps.EnrollOrder{Origin: steps.Origin{RunID: 950001, Step: "enroll", Depth: 1}, Template: "Retained",
		Subject: "CN=gen.example.com", SANs: map[string][]string{"dns": {"gen.example.com"}}}
	first, err := act.Enroll(ctx, order)
	if err != nil || first.RequestID == 0 {
		t.Fatalf("Enroll: %+v %v", first, err)
	}
	again, err := act.Enroll(ctx, order)
	if err != nil || again.RequestID != first.RequestID || !again.Existing {
		t.Fatalf("a repeat made %+v (%v), want request %d", again, err, first.RequestID)
	}
	r := settled(t, cf, first.RequestID)
	c, _ := r.Certificate()
	if r.Disposition != store.Issued || c == nil || len(r.PrivateKey) == 0 || r.Requester.Name != steps.Actor {
		t.Fatalf("enrollment %s %q by %s, key retained %t", r.Disposition, r.Message, r.Requester.Name, len(r.PrivateKey) > 0)
	}
	leaf, _ := x509.ParseCertificate(c.Chain[0])
	if leaf.Subject.CommonName != "gen.example.com" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "gen.example.com" {
		t.Fatalf("issued %s %v", leaf.Subject, leaf.DNSNames)
	}
	// An administrator recovers the key with a password of their own.
	resp := cf.Do(t, "POST", "/Certificates/Recover", map[string]any{"CertID": c.ID, "Password": "recover-it-1234"}, "Authorization", bearer(testutil.AdminToken))
	if resp.Status != http.StatusOK {
		t.Fatalf("recover: %d %s", resp.Status, resp.Body)
	}
}

func TestAutomationAttemptsAtOnceMakeOneRequest(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	act := automation(cf)
	renewed := issueFor(t, cf, "race-renew.example.com", "race-renew.example.com")
	revoked := issueFor(t, cf, "race-revoke.example.com", "race-revoke.example.com")
	const attempts = 6
	type result struct {
		o   steps.Outcome
		err error
	}
	race := func(do func() (steps.Outcome, error)) []result {
		out := make([]result, attempts)
		var wg sync.WaitGroup
		for i := range out {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, err := do()
				out[i] = result{o, err}
			}()
		}
		wg.Wait()
		return out
	}
	for what, rs := range map[string][]result{
		"renew": race(func() (steps.Outcome, error) {
			return act.Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 960001, Step: "renew"}, CertificateID: renewed})
		}),
		"revoke": race(func() (steps.Outcome, error) {
			return act.Revoke(ctx, steps.RevokeOrder{Origin: steps.Origin{RunID: 960002, Step: "revoke"}, CertificateID: revoked, Comment: "race"})
		}),
	} {
		for i, r := range rs {
			if r.err != nil || r.o.RequestID == 0 || r.o.RequestID != rs[0].o.RequestID {
				t.Fatalf("%s attempt %d: %+v %v; first %+v: every attempt must answer one request", what, i, r.o, r.err, rs[0].o)
			}
		}
	}
	// Two certificates, one renewal, one revocation: four records.
	record := regexp.MustCompile(`:request:\{\d+\}$`)
	var records []string
	iter := cf.Redis.Scan(ctx, 0, cf.Prefix+":request:*", 1000).Iterator()
	for iter.Next(ctx) {
		if record.MatchString(iter.Val()) {
			records = append(records, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(records) != 4 {
		t.Fatalf("request records %v: want the two certificates, one renewal and one revocation", records)
	}
}

const autoRenewDef = `name: auto-renew
trigger: event:certificate.expiring
# Renew what people asked for; what automation renewed is renewed by hand
# (with certificates shorter-lived than the threshold, as here, the
# renewal would be announced at once, with depth 1, and renewed again).
match: event.Depth == 0 && !certificate.Revoked && certificate.SupersededBy == 0
steps:
  - id: renew
    uses: renew
  - id: tell
    uses: notify
    with:
      log: "auto-renew: certificate ${{ certificate.ID }} → request ${{ steps.renew.request }} ${{ steps.renew.skipped ?? '' }}"
`

func TestTheExpiryWatchAndAnAutoRenewDefinitionRenewOnce(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"auto-renew.yaml": autoRenewDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Templates[0].Validity = 30 * time.Minute
		c.Events.ExpiryWatch.Thresholds = []string{"1h"}
		c.Events.ExpiryWatch.Interval = 50 * time.Millisecond
	})
	ctx := context.Background()
	oldID := issueFor(t, cf, "auto.example.com", "auto.example.com")
	var newID int64
	waitFor(t, "the certificate to be renewed", func() bool {
		newID, _ = cf.App.Store.SupersededBy(ctx, oldID)
		return newID != 0
	})
	time.Sleep(500 * time.Millisecond) // passes and dispatches enough for a second renewal, were there one
	renewed := eventsNamed(t, cf, workflow.EventCertificateRenewed)
	if len(renewed) != 1 || renewed[0].CertificateID != newID || renewed[0].Depth != 1 {
		t.Fatalf("certificate.renewed events %+v: want one, of %d, depth 1", renewed, newID)
	}
	expiring := eventsNamed(t, cf, workflow.EventCertificateExpiring)
	var ofOld int
	for _, ev := range expiring {
		if ev.CertificateID == oldID {
			ofOld++
			if ev.Depth != 0 {
				t.Fatalf("the watch's event %+v has a depth", ev)
			}
			runs, _ := cf.App.Store.EventRuns(ctx, ev.ID)
			run := settled(t, cf, runs["auto-renew"])
			if run.Disposition != store.Completed || outputID(t, run, "renew", "request") != newID {
				t.Fatalf("run %s %q: outputs %v; want the renewal %d", run.Disposition, run.Message, run.Instance.Outputs["renew"], newID)
			}
		}
	}
	if ofOld != 1 {
		t.Fatalf("%d certificate.expiring events of the old certificate", ofOld)
	}
	r, _ := cf.App.Store.Get(ctx, newID)
	if r.Requester.Name != "alice" || r.Input.RenewalCertificateId != oldID {
		t.Fatalf("renewal by %s of %d (want alice's, whose certificate it renews)", r.Requester.Name, r.Input.RenewalCertificateId)
	}
	// alice sees her renewed certificate, as she saw the old one.
	if resp := cf.Do(t, "GET", fmt.Sprintf("/Certificates/%d", newID), nil, "Authorization", bearer(testutil.AliceToken)); resp.Status != http.StatusOK {
		t.Fatalf("alice reads her renewed certificate: %d %s", resp.Status, resp.Body)
	}
	// Its expiry events carry the renewal's depth: the definition's
	// match (event.Depth == 0) leaves it alone.
	waitFor(t, "the renewed certificate's own expiry event", func() bool {
		for _, ev := range eventsNamed(t, cf, workflow.EventCertificateExpiring) {
			if ev.CertificateID == newID {
				return ev.Depth == 1
			}
		}
		return false
	})
	if n, _ := cf.Redis.ZCard(ctx, cf.Prefix+":certificates").Result(); n != 2 {
		t.Fatalf("%d certificates, want the old and one renewal", n)
	}
}

func TestClientsMayNotSendTheAutomationsIdempotencyKeys(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	id := issueFor(t, cf, "keys.example.com", "keys.example.com")
	csr, _ := testutil.CSR(t, "keys2.example.com", "keys2.example.com")
	key := steps.Origin{RunID: 12345, Step: "renew"}.Key(id)
	for _, c := range []struct {
		path, format string
		body         map[string]any
	}{
		{"/Enrollment/CSR", "PEM", testutil.EnrollBody(csr, nil)},
		{"/Enrollment/Renew", "PEM", map[string]any{"CertificateId": id}},
		{"/Enrollment/PFX", "PFX", map[string]any{"Subject": "CN=keys3.example.com", "Template": "WebServer", "Password": "Secret-Pass-1", "KeyType": "ECC", "KeyLength": 256}},
	} {
		resp := cf.Do(t, "POST", c.path, c.body, "Authorization", bearer(testutil.AliceToken), "Idempotency-Key", key, "x-certificateformat", c.format)
		assertError(t, resp, http.StatusBadRequest, keyfactor.CodeInvalidField, "certflow-run:")
	}
	if n, _ := cf.Redis.ZCard(context.Background(), cf.Prefix+":certificates").Result(); n != 1 {
		t.Fatalf("%d certificates after the refusals", n)
	}
}

// Two definitions that renew on one certificate.expiring event run at
// once: each run has its own Idempotency-Key, so only the certificate
// can tell them apart. One renewal may be made, however the runs
// interleave; the other run's step skips it (or is tried again, and
// then skips it).
func TestConcurrentRunsRenewACertificateOnce(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	act := automation(cf)
	certID := issueFor(t, cf, "fanout-renew.example.com", "fanout-renew.example.com")
	const runs = 6
	made := make([]int64, runs)
	var wg sync.WaitGroup
	for i := range made {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := steps.RenewOrder{Origin: steps.Origin{RunID: int64(970001 + i), Step: "renew", Depth: 1}, CertificateID: certID}
			for try := 0; try < 50; try++ { // the step's retries
				out, err := act.Renew(ctx, o)
				if err == nil {
					made[i] = out.RequestID
					return
				}
				var perm *workflow.PermanentError
				if errors.As(err, &perm) {
					t.Errorf("run %d: %v", i, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("run %d: still refused after its retries", i)
		}()
	}
	wg.Wait()
	distinct := map[int64]bool{}
	for _, id := range made {
		if id != 0 {
			distinct[id] = true
		}
	}
	if len(distinct) != 1 {
		t.Fatalf("runs made renewal requests %v: want exactly one renewal of certificate %d", made, certID)
	}
}

// A revoke step's query value comes from event data, and the step
// refuses an empty one (-contains "" matches every certificate). But the
// inventory compares values normalized: a serial number without colons
// and leading zeros, a thumbprint without colons. An event carrying ":"
// or "0" made `SerialNumber -startswith "${{ event.Data.serial }}"` match
// every certificate, and a revoke step revoke them all (up to its bound).
func TestAutomationQueriesRefuseAValueEmptyOnceNormalized(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	act := automation(cf)
	issueFor(t, cf, "norm1.example.com", "norm1.example.com")
	issueFor(t, cf, "norm2.example.com", "norm2.example.com")
	for _, q := range []string{
		`SerialNumber -startswith "0"`,
		`SerialNumber -contains ":"`,
		`SerialNumber -endswith ": :"`,
		`Thumbprint -contains ":"`,
		`IssuedCN -eq "norm1.example.com" AND SerialNumber -startswith "00:"`,
	} {
		ids, err := act.FindCertificates(ctx, q, 100)
		var perm *workflow.PermanentError
		if err == nil || !errors.As(err, &perm) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("FindCertificates(%s) = %v, %v: want a permanent refusal saying the value is empty", q, ids, err)
		}
	}
}

func TestARenewalIsMadeWithItsOwnersRolesOfNow(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	gone := issueFor(t, cf, "gone.example.com", "gone.example.com")
	demoted := issueFor(t, cf, "demoted.example.com", "demoted.example.com")
	// An enrollment service whose configuration no longer has alice (as
	// after an edit and a restart), and one where she lost her role.
	with := func(users []config.User) *enrollsvc.Automation {
		cfg := *cf.App.Config
		cfg.Auth.Users = users
		a := cf.App
		return enrollsvc.New(enrollsvc.Options{Config: &cfg, Store: a.Store, Queue: a.Queue, KEK: a.KEK, Log: a.Log, Definitions: &a.Defs}).Automation()
	}
	var others []config.User
	for _, u := range cf.App.Config.Auth.Users {
		if u.Name != "alice" {
			others = append(others, u)
		}
	}
	out, err := with(others).Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 910001, Step: "renew"}, CertificateID: gone})
	var perm *workflow.PermanentError
	if err == nil || !errors.As(err, &perm) || !strings.Contains(err.Error(), `requester "alice" is no longer a configured user`) || out.RequestID != 0 {
		t.Fatalf("renewal for a removed user: %+v %v", out, err)
	}
	out, err = with(append(others, config.User{Name: "alice", Token: testutil.AliceToken, Roles: []string{config.RoleApprover}})).
		Renew(ctx, steps.RenewOrder{Origin: steps.Origin{RunID: 910002, Step: "renew"}, CertificateID: demoted})
	if err == nil || out.RequestID != 0 || !errors.As(err, &perm) || !strings.Contains(err.Error(), "alice may not enroll with template WebServer") {
		t.Fatalf("renewal for a user who lost the requester role: %+v %v", out, err)
	}
	if n, _ := cf.Redis.ZCard(ctx, cf.Prefix+":certificates").Result(); n != 2 {
		t.Fatalf("%d certificates: a renewal was issued", n)
	}
}

package app_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// typedMetadata configures one metadata field of every Keyfactor type,
// plus the two the shipped default workflow sets.
func typedMetadata(c *config.Config) {
	c.Metadata = []config.MetaField{
		{Name: "RequestedBy", Type: "String", Enrollment: "Optional"},
		{Name: "Workflow", Type: "String", Enrollment: "Optional"},
		{Name: "Team", Type: "String", Validation: `[a-z][a-z0-9-]*`, Message: "lower-case letters, digits and dashes"},
		{Name: "CostCenter", Type: "Integer", Enrollment: "Required"},
		{Name: "Expires", Type: "Date"},
		{Name: "Internal", Type: "Boolean"},
		{Name: "Reviewed", Type: "Boolean", DefaultValue: "TRUE"},
		{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}, DefaultValue: "Test"},
		{Name: "Notes", Type: "BigText"},
		{Name: "Owner", Type: "Email"},
		{Name: "ApprovedBy", Type: "String", Enrollment: "Hidden"},
	}
}

func TestTypedMetadataIsRefusedAndLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, typedMetadata)
	csr, _ := testutil.CSR(t, "meta.example.com")
	// with is a body whose Metadata is a valid set changed by md (a nil
	// value removes the field).
	with := func(md map[string]any) map[string]any {
		m := map[string]any{"CostCenter": "100"}
		for k, v := range md {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return testutil.EnrollBody(csr, map[string]any{"Metadata": m})
	}
	const E, U = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
	cases := []struct {
		name string
		md   map[string]any
		code string
		want string // in the message
	}{
		{"String failing its pattern shows the message", map[string]any{"Team": "Web Team"}, E, "Metadata.Team: lower-case letters, digits and dashes"},
		{"String over 4000 characters", map[string]any{"Team": strings.Repeat("a", 4001)}, E, "Metadata.Team: 4001 characters; at most 4000"},
		{"Integer with letters", map[string]any{"CostCenter": "12a"}, E, `Metadata.CostCenter: "12a" is not a whole number`},
		{"Integer given as a fractional JSON number", map[string]any{"CostCenter": 1.5}, E, `Metadata.CostCenter: "1.5" is not a whole number`},
		{"Integer past int64", map[string]any{"CostCenter": "9223372036854775808"}, E, "Metadata.CostCenter: \"9223372036854775808\" does not fit a 64-bit integer"},
		{"Integer as a JSON number too large to be exact", map[string]any{"CostCenter": 1e20}, E, "Metadata.CostCenter: a number this large loses precision"},
		{"Date that does not exist", map[string]any{"Expires": "2025-02-30"}, E, `Metadata.Expires: "2025-02-30" is not a date`},
		{"Date in another format", map[string]any{"Expires": "03/01/2026"}, E, "Metadata.Expires: \"03/01/2026\" is not a date (want 2006-01-02 or an RFC 3339 timestamp)"},
		{"Boolean yes", map[string]any{"Internal": "yes"}, E, `Metadata.Internal: "yes" is not a boolean (want true or false)`},
		{"Boolean as a JSON number", map[string]any{"Internal": 1}, E, `Metadata.Internal: "1" is not a boolean`},
		{"MultipleChoice in the wrong case", map[string]any{"Env": "prod"}, E, `Metadata.Env: "prod" is not one of the options (Prod, Test)`},
		{"BigText over 64 KiB", map[string]any{"Notes": strings.Repeat("n", 64<<10+1)}, E, "Metadata.Notes: 65537 bytes; at most 65536"},
		{"Email with a display name", map[string]any{"Owner": "PKI <pki@example.com>"}, E, `Metadata.Owner: "PKI <pki@example.com>" is not an email address`},
		{"Email without a domain", map[string]any{"Owner": "pki"}, E, `Metadata.Owner: "pki" is not an email address`},
		{"a Required field missing", map[string]any{"CostCenter": nil}, E, "Metadata.CostCenter: required"},
		{"a Required field empty", map[string]any{"CostCenter": ""}, E, "Metadata.CostCenter: required"},
		// ApprovedBy is Hidden, and one workflows set: reserved first.
		{"a Hidden field given", map[string]any{"ApprovedBy": "alice"}, E, "Metadata.ApprovedBy: set by the workflow"},
		{"a Hidden field given in another case", map[string]any{"approvedby": "alice"}, E, "Metadata.ApprovedBy: set by the workflow"},
		{"one field twice in different cases", map[string]any{"team": "web", "TEAM": "ops"}, E, "Metadata.Team: given twice"},
		{"an unknown field", map[string]any{"Colour": "blue"}, U, "Metadata.Colour: no such metadata field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := cf.Do(t, "POST", "/Enrollment/CSR", with(tc.md), "x-certificateformat", "PEM")
			assertError(t, resp, http.StatusBadRequest, tc.code, tc.want)
		})
	}
	assertNothingStored(t, cf)
}

func TestTypedMetadataIsNormalizedAndDefaulted(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, typedMetadata)

	t.Run("normalized values and defaults are answered and stored", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "typed.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{
			"team":       "web-1", // the configured spelling is stored
			"CostCenter": "+007",
			"Expires":    "2026-03-01",
			"Internal":   "TRUE",
			"Notes":      strings.Repeat("long text ", 1000),
			"Owner":      "pki@example.com",
			"ApprovedBy": "", // empty is not given, even for a Hidden field
		}}))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
		want := map[string]string{
			"Team":        "web-1",
			"CostCenter":  "7",
			"Expires":     "2026-03-01",
			"Internal":    "true",
			"Reviewed":    "true", // the default "TRUE", normalized when the config loaded
			"Env":         "Test", // the default
			"Notes":       strings.Repeat("long text ", 1000),
			"Owner":       "pki@example.com",
			"RequestedBy": "admin",
			"Workflow":    "enrollment-default",
		}
		if !reflect.DeepEqual(er.Metadata, want) {
			t.Fatalf("Metadata = %v\nwant %v", er.Metadata, want)
		}
		r := cf.Do(t, "GET", fmt.Sprintf("/Enrollment/Requests/%d", er.CertificateInformation.KeyfactorRequestId), nil)
		var st requestStatus
		r.JSON(t, &st)
		if !reflect.DeepEqual(st.Metadata, want) {
			t.Fatalf("stored Metadata = %v\nwant %v", st.Metadata, want)
		}
	})
	t.Run("JSON numbers and booleans are taken as their text", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "json.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{
			"CostCenter": 12345678, "Internal": false, "Env": "Prod", "Reviewed": nil,
		}}))
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
		md := er.Metadata
		if md["CostCenter"] != "12345678" || md["Internal"] != "false" || md["Env"] != "Prod" || md["Reviewed"] != "true" {
			t.Fatalf("Metadata = %v", md)
		}
	})
	t.Run("a timestamp is a Date too", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "stamp.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{
			"CostCenter": "-0", "Expires": "2026-03-01T12:00:00.000+00:00",
		}}))
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
		if md := er.Metadata; md["CostCenter"] != "0" || md["Expires"] != "2026-03-01T12:00:00Z" {
			t.Fatalf("Metadata = %v", md)
		}
	})
}

func TestAWorkflowValueFailingItsFieldFailsTheRequest(t *testing.T) {
	t.Parallel()
	// The Hidden field is the workflow's to set; a value it computes that
	// its field's type refuses is a permanent failure, not a certificate
	// with bad metadata.
	dir := defsDir(t, map[string]string{"typed.yaml": `name: typed
trigger: enrollment
steps:
  - id: tag
    uses: metadata
    with:
      set:
        ApprovedBy: "${{ requester.Name }}"
        Internal: "${{ csr.CommonName }}"
`})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		typedMetadata(c)
		c.Definitions = dir
	})
	csr, _ := testutil.CSR(t, "not-a-number.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"CostCenter": "1"}}))
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	info := er.CertificateInformation
	if info.RequestDisposition != "FAILED" || !strings.Contains(info.DispositionMessage, `set.Internal: "not-a-number.example.com" is not a boolean`) {
		t.Fatalf("disposition %s %q; want FAILED naming set.Internal", info.RequestDisposition, info.DispositionMessage)
	}
}

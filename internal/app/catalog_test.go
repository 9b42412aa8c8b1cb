package app_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

const (
	ownerToken = "owen-token" // requester and web-owners
	viewToken  = "vic-token"  // approver only
)

// catalogDef is the only definition of the catalogue tests: the template
// policy, a rule and a metadata value that read the request's
// AdditionalEnrollmentFields, the CA.
const catalogDef = `name: catalog
trigger: enrollment
steps:
  - id: policy
    uses: validate
    with:
      rules:
        - check: request.AdditionalEnrollmentFields["Ticket"] != "CHG-0"
          message: change CHG-0 is closed
  - id: issue
    uses: issue
  - id: tag
    uses: metadata
    with:
      set:
        ZoneTag: "${{ request.AdditionalEnrollmentFields['Zone'] ?? 'none' }}"
`

// catalogConfig: WebServer for every requester, Internal for web-owners
// only (owner required, CostCenter required and Team hidden for it, two
// enrollment fields), two configured security roles.
func catalogConfig(t *testing.T) func(c *config.Config) {
	dir := defsDir(t, map[string]string{"catalog.yaml": catalogDef})
	return func(c *config.Config) {
		c.Definitions = dir
		c.SecurityRoles = []config.SecurityRole{
			{ID: 10, Name: "pki-admins", Description: "The PKI team"},
			{ID: 11, Name: "web-owners"},
		}
		c.Metadata = []config.MetaField{
			{Name: "Team", Validation: `[a-z]+`, Message: "lower-case letters", Description: "Owning team", Hint: "e.g. web"},
			{Name: "CostCenter", Type: "Integer", DisplayOrder: 9},
			{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}, DefaultValue: "Test"},
			{Name: "ZoneTag"},
			{Name: "ApprovedBy", Enrollment: "Hidden"},
		}
		internal := c.Templates[0]
		internal.Name, internal.DisplayName = "Internal", "Internal Server"
		internal.RSAKeySizes = []int{3072}
		internal.ECCCurves = []string{"P-384", "P-256"}
		internal.AllowedRequesters = []string{"web-owners"}
		internal.RequireOwnerRole = true
		internal.MetadataFields = []config.TemplateMetaField{
			{Name: "CostCenter", Enrollment: "Required"},
			{Name: "Team", Enrollment: "Hidden"},
			{Name: "Env", DefaultValue: "Prod"},
		}
		internal.EnrollmentFields = []config.EnrollmentField{
			{Name: "Ticket", Required: true},
			{Name: "Zone", Type: "MultipleChoice", Options: []string{"dmz", "lan"}},
		}
		c.Templates = append(c.Templates, internal)
		c.Auth.Users = append(c.Auth.Users,
			config.User{Name: "owen", Token: ownerToken, Roles: []string{config.RoleRequester, "web-owners"}},
			config.User{Name: "vic", Token: viewToken, Roles: []string{config.RoleApprover}},
		)
	}
}

// internalBody is a valid Internal enrollment, changed by extra.
func internalBody(csr []byte, extra map[string]any) map[string]any {
	b := map[string]any{
		"Template":                   "Internal",
		"OwnerRoleId":                11,
		"Metadata":                   map[string]any{"CostCenter": 7},
		"AdditionalEnrollmentFields": map[string]any{"Ticket": "CHG-1"},
	}
	for k, v := range extra {
		b[k] = v
	}
	return testutil.EnrollBody(csr, b)
}

func getJSON(t *testing.T, cf *testutil.Certflow, path, token string, v any) {
	t.Helper()
	r := cf.Do(t, "GET", path, nil, "Authorization", bearer(token))
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	r.JSON(t, v)
}

// hasKeys fails unless the JSON object has every one of Keyfactor's names.
func hasKeys(t *testing.T, what string, obj map[string]any, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := obj[n]; !ok {
			t.Errorf("%s has no %q: %v", what, n, obj)
		}
	}
}

func TestTemplatesAnswerKeyfactorsTemplateObjects(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, catalogConfig(t))
	var raw []map[string]any
	getJSON(t, cf, "/Templates", testutil.AliceToken, &raw)
	if len(raw) != 2 {
		t.Fatalf("%d templates, want 2", len(raw))
	}
	hasKeys(t, "a template", raw[1], "Id", "CommonName", "TemplateName", "KeySize", "KeyType", "FriendlyName", "KeyRetention",
		"KeyRetentionDays", "KeyArchival", "EnrollmentFields", "MetadataFields", "AllowedEnrollmentTypes", "TemplateRegexes",
		"UseAllowedRequesters", "AllowedRequesters", "RFCEnforcement", "RequiresApproval", "KeyUsage", "ExtendedKeyUsages", "Curve", "TemplatePolicy")
	var list []keyfactor.Template
	getJSON(t, cf, "/Templates", testutil.AliceToken, &list)
	web, internal := list[0], list[1]
	if web.Id != 1 || web.CommonName != "WebServer" || web.TemplateName != "Web Server" || web.KeyType != "RSA" || web.KeySize != "2048" ||
		web.KeyRetention != "None" || !web.RFCEnforcement || web.UseAllowedRequesters || web.AllowedEnrollmentTypes != 3 {
		t.Errorf("WebServer = %+v", web)
	}
	if web.KeyUsage != 0x80|0x20 {
		t.Errorf("WebServer KeyUsage = %d, want 160 (digitalSignature | keyEncipherment)", web.KeyUsage)
	}
	wantEKU := []keyfactor.ExtendedKeyUsage{{Id: 1, Oid: "1.3.6.1.5.5.7.3.1", DisplayName: "Server Authentication"}, {Id: 2, Oid: "1.3.6.1.5.5.7.3.2", DisplayName: "Client Authentication"}}
	if !reflect.DeepEqual(web.ExtendedKeyUsages, wantEKU) {
		t.Errorf("ExtendedKeyUsages = %+v", web.ExtendedKeyUsages)
	}
	wantPolicy := keyfactor.TemplatePolicy{TemplateId: 2, RSAValidKeySizes: []int{3072}, ECCValidCurves: []string{"1.3.132.0.34", "1.2.840.10045.3.1.7"}, RFCEnforcement: true, CertificateOwnerRole: 1}
	if !reflect.DeepEqual(internal.TemplatePolicy, wantPolicy) {
		t.Errorf("Internal TemplatePolicy = %+v\nwant %+v", internal.TemplatePolicy, wantPolicy)
	}
	if internal.Curve != "1.3.132.0.34" || !internal.UseAllowedRequesters || !slices.Equal(internal.AllowedRequesters, []string{"web-owners"}) {
		t.Errorf("Internal = %+v", internal)
	}
	wantFields := []keyfactor.TemplateEnrollmentField{
		{Id: 1, Name: "Ticket", Options: []string{}, DataType: 1, Required: true},
		{Id: 2, Name: "Zone", Options: []string{"dmz", "lan"}, DataType: 2},
	}
	if !reflect.DeepEqual(internal.EnrollmentFields, wantFields) {
		t.Errorf("EnrollmentFields = %+v", internal.EnrollmentFields)
	}
	md := map[string]keyfactor.TemplateMetadataField{}
	for _, f := range internal.MetadataFields {
		md[cf.Config.Metadata[f.MetadataId-1].Name] = f
	}
	if md["CostCenter"].Enrollment != 1 || md["Team"].Enrollment != 2 || md["Env"].DefaultValue != "Prod" || md["Env"].Options != "Prod,Test" || md["ZoneTag"].Enrollment != 0 {
		t.Errorf("Internal MetadataFields do not carry its overrides: %+v", internal.MetadataFields)
	}
	for _, f := range web.MetadataFields {
		if name := cf.Config.Metadata[f.MetadataId-1].Name; name == "CostCenter" && f.Enrollment != 0 {
			t.Errorf("WebServer's CostCenter took Internal's override: %+v", f)
		}
	}

	t.Run("one template by id", func(t *testing.T) {
		var one keyfactor.Template
		getJSON(t, cf, "/Templates/2", testutil.AliceToken, &one)
		if !reflect.DeepEqual(one, internal) {
			t.Errorf("GET /Templates/2 = %+v\nwant %+v", one, internal)
		}
		assertError(t, cf.Do(t, "GET", "/Templates/3", nil), http.StatusNotFound, keyfactor.CodeNotFound, "template 3")
		assertError(t, cf.Do(t, "GET", "/Templates/web", nil), http.StatusBadRequest, keyfactor.CodeInvalidField, "id: ")
	})
}

func TestCSRContextListsTheTemplatesTheCallerMayUse(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		catalogConfig(t)(c)
		c.CAs = append(c.CAs, config.CA{Name: "Standalone", Host: "cahost", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour})
	})
	names := func(token string) ([]string, []string) {
		var raw map[string]any
		getJSON(t, cf, "/Enrollment/CSR/Context/My", token, &raw)
		hasKeys(t, "the context", raw, "Templates", "StandaloneCAs")
		var ctx keyfactor.CSRContext
		getJSON(t, cf, "/Enrollment/CSR/Context/My", token, &ctx)
		var tn, sn []string
		for _, tm := range ctx.Templates {
			tn = append(tn, tm.Name)
		}
		for _, c := range ctx.StandaloneCAs {
			sn = append(sn, c.Name)
		}
		return tn, sn
	}
	for _, tc := range []struct {
		who, token string
		templates  []string
		standalone []string
	}{
		{"a requester sees the open template only", testutil.AliceToken, []string{"WebServer"}, []string{`cahost\Standalone`}},
		{"a web-owner sees both", ownerToken, []string{"WebServer", "Internal"}, []string{`cahost\Standalone`}},
		{"an approver who cannot enroll sees none", viewToken, nil, nil},
		{"the admin sees both", testutil.AdminToken, []string{"WebServer", "Internal"}, []string{`cahost\Standalone`}},
	} {
		t.Run(tc.who, func(t *testing.T) {
			tn, sn := names(tc.token)
			if !slices.Equal(tn, tc.templates) || !slices.Equal(sn, tc.standalone) {
				t.Errorf("templates %v, standalone CAs %v; want %v, %v", tn, sn, tc.templates, tc.standalone)
			}
		})
	}
	t.Run("the PFX context is the same", func(t *testing.T) {
		var csrCtx, pfxCtx keyfactor.CSRContext
		getJSON(t, cf, "/Enrollment/CSR/Context/My", ownerToken, &csrCtx)
		getJSON(t, cf, "/Enrollment/PFX/Context/My", ownerToken, &pfxCtx)
		if !reflect.DeepEqual(csrCtx, pfxCtx) {
			t.Errorf("PFX context %+v\ndiffers from the CSR context %+v", pfxCtx, csrCtx)
		}
	})
	t.Run("each template carries its CAs and policy", func(t *testing.T) {
		var raw struct{ Templates []map[string]any }
		getJSON(t, cf, "/Enrollment/CSR/Context/My", ownerToken, &raw)
		hasKeys(t, "a context template", raw.Templates[1], "Id", "Name", "DisplayName", "RequiresApproval", "KeyRetention", "CAs",
			"EnrollmentFields", "MetadataFields", "Regexes", "AllowedEnrollmentTypes", "TemplateDefaultSettings", "TemplatePolicy")
		var ctx keyfactor.CSRContext
		getJSON(t, cf, "/Enrollment/CSR/Context/My", ownerToken, &ctx)
		in := ctx.Templates[1]
		if in.Id != 2 || in.DisplayName != "Internal Server" || len(in.CAs) != 1 || in.CAs[0].Name != `certflow\CertflowIssuingCA` ||
			in.TemplatePolicy.CertificateOwnerRole != 1 || !slices.Equal(in.TemplatePolicy.RSAValidKeySizes, []int{3072}) || len(in.EnrollmentFields) != 2 {
			t.Errorf("Internal in the context = %+v", in)
		}
	})
}

func TestATemplateTheCallerMayNotUseIsRefusedWith403(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, catalogConfig(t))
	csr, _ := testutil.CSR(t, "closed.example.com")
	resp := cf.Do(t, "POST", "/Enrollment/CSR", internalBody(csr, nil), "x-certificateformat", "PEM", "Authorization", bearer(testutil.AliceToken))
	assertError(t, resp, http.StatusForbidden, keyfactor.CodeForbidden, "Template: alice may not enroll with template Internal (allowed: web-owners)")
	assertNothingStored(t, cf)
	r, er := enroll(t, cf, internalBody(csr, nil), "Authorization", bearer(ownerToken))
	if r.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("a web-owner's enrollment: %d %s", r.Status, r.Body)
	}
}

func TestEnrollmentFieldsAreCheckedAndReachTheWorkflow(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, catalogConfig(t))
	csr, _ := testutil.CSR(t, "fields.example.com")
	const E, U = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
	for _, tc := range []struct {
		name     string
		template string
		fields   any
		code     string
		want     string
	}{
		{"an unknown field", "Internal", map[string]any{"Ticket": "CHG-1", "Colour": "red"}, U, "AdditionalEnrollmentFields.Colour: template Internal has no such enrollment field (it has Ticket, Zone)"},
		{"a field on a template that has none", "WebServer", map[string]any{"Ticket": "CHG-1"}, U, "AdditionalEnrollmentFields.Ticket: template WebServer has no enrollment fields"},
		{"a value that is not an option", "Internal", map[string]any{"Ticket": "CHG-1", "Zone": "DMZ"}, E, `AdditionalEnrollmentFields.Zone: "DMZ" is not one of the options (dmz, lan)`},
		{"a required field missing", "Internal", map[string]any{"Zone": "dmz"}, E, "AdditionalEnrollmentFields.Ticket: required by template Internal"},
		{"a required field empty", "Internal", map[string]any{"Ticket": ""}, E, "AdditionalEnrollmentFields.Ticket: required by template Internal"},
		{"no fields at all for a template that requires one", "Internal", nil, E, "AdditionalEnrollmentFields.Ticket: required"},
		{"one field twice in different cases", "Internal", map[string]any{"Ticket": "a", "TICKET": "b"}, E, "AdditionalEnrollmentFields.Ticket: given twice"},
		{"a number too large to be exact", "Internal", map[string]any{"Ticket": 1e20}, E, "AdditionalEnrollmentFields.Ticket: a number this large loses precision"},
		{"a value that is an object", "Internal", map[string]any{"Ticket": map[string]any{}}, E, "AdditionalEnrollmentFields.Ticket: want a string"},
		{"fields that are not an object", "Internal", []string{"Ticket"}, E, "AdditionalEnrollmentFields: want an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := internalBody(csr, map[string]any{"Template": tc.template, "AdditionalEnrollmentFields": tc.fields})
			if tc.template == "WebServer" {
				delete(body, "OwnerRoleId")
				delete(body, "Metadata")
			}
			if tc.fields == nil {
				delete(body, "AdditionalEnrollmentFields")
			}
			resp := cf.Do(t, "POST", "/Enrollment/CSR", body, "x-certificateformat", "PEM", "Authorization", bearer(ownerToken))
			assertError(t, resp, http.StatusBadRequest, tc.code, tc.want)
		})
	}
	assertNothingStored(t, cf)

	t.Run("valid fields are stored under their configured names and read by expressions", func(t *testing.T) {
		resp, er := enroll(t, cf, internalBody(csr, map[string]any{"AdditionalEnrollmentFields": map[string]any{"ticket": "CHG-1", "ZONE": "dmz"}}), "Authorization", bearer(ownerToken))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		if er.Metadata["ZoneTag"] != "dmz" {
			t.Errorf("ZoneTag = %q: the definition's ${{ request.AdditionalEnrollmentFields['Zone'] }} did not see the field", er.Metadata["ZoneTag"])
		}
		req, err := cf.App.Store.Get(context.Background(), er.CertificateInformation.KeyfactorRequestId)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]any{"Ticket": "CHG-1", "Zone": "dmz"}; !reflect.DeepEqual(req.Input.AdditionalEnrollmentFields, want) {
			t.Errorf("stored AdditionalEnrollmentFields = %v, want %v", req.Input.AdditionalEnrollmentFields, want)
		}
	})
	t.Run("an optional field left out is absent to expressions", func(t *testing.T) {
		_, er := enroll(t, cf, internalBody(csr, nil), "Authorization", bearer(ownerToken))
		if er.CertificateInformation.RequestDisposition != "ISSUED" || er.Metadata["ZoneTag"] != "none" {
			t.Fatalf("%s, ZoneTag %q", er.CertificateInformation.RequestDisposition, er.Metadata["ZoneTag"])
		}
	})
	t.Run("a validate rule on a field denies the request", func(t *testing.T) {
		_, er := enroll(t, cf, internalBody(csr, map[string]any{"AdditionalEnrollmentFields": map[string]any{"Ticket": "CHG-0"}}), "Authorization", bearer(ownerToken))
		if info := er.CertificateInformation; info.RequestDisposition != "DENIED" || !strings.Contains(info.DispositionMessage, "change CHG-0 is closed") {
			t.Fatalf("%s %q, want DENIED by the rule", info.RequestDisposition, info.DispositionMessage)
		}
	})
	t.Run("numbers and booleans are taken as their text", func(t *testing.T) {
		_, er := enroll(t, cf, internalBody(csr, map[string]any{"AdditionalEnrollmentFields": map[string]any{"Ticket": 42}}), "Authorization", bearer(ownerToken))
		req, err := cf.App.Store.Get(context.Background(), er.CertificateInformation.KeyfactorRequestId)
		if err != nil || req.Input.AdditionalEnrollmentFields["Ticket"] != "42" {
			t.Fatalf("stored %v (%v)", req.Input.AdditionalEnrollmentFields, err)
		}
	})
}

func TestTemplateMetadataOverridesApplyToItsEnrollmentsOnly(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, catalogConfig(t))
	csr, _ := testutil.CSR(t, "md.example.com")
	const E = keyfactor.CodeInvalidField
	for _, tc := range []struct {
		name string
		md   map[string]any
		want string
	}{
		{"a field the template makes Required is missing", map[string]any{}, "Metadata.CostCenter: required by template Internal"},
		{"a field the template hides is given", map[string]any{"CostCenter": 1, "Team": "web"}, "Metadata.Team: hidden for template Internal"},
		{"the field's own type still applies", map[string]any{"CostCenter": "x"}, `Metadata.CostCenter: "x" is not a whole number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := cf.Do(t, "POST", "/Enrollment/CSR", internalBody(csr, map[string]any{"Metadata": tc.md}), "x-certificateformat", "PEM", "Authorization", bearer(ownerToken))
			assertError(t, resp, http.StatusBadRequest, E, tc.want)
		})
	}
	assertNothingStored(t, cf)
	t.Run("the template's default applies to it, the field's to others", func(t *testing.T) {
		_, er := enroll(t, cf, internalBody(csr, nil), "Authorization", bearer(ownerToken))
		if er.Metadata["Env"] != "Prod" || er.Metadata["CostCenter"] != "7" {
			t.Errorf("Internal metadata = %v, want Env Prod (the template's default)", er.Metadata)
		}
		_, er = enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "web"}}), "Authorization", bearer(ownerToken))
		if er.CertificateInformation.RequestDisposition != "ISSUED" || er.Metadata["Env"] != "Test" || er.Metadata["Team"] != "web" {
			t.Errorf("WebServer: %s, metadata %v; want Team allowed and Env Test (the field's default)", er.CertificateInformation.RequestDisposition, er.Metadata)
		}
	})
}

func TestOwnerRoleIsResolvedAndStoredOnTheCertificate(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, catalogConfig(t))
	csr, _ := testutil.CSR(t, "owner.example.com")
	const E, U = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
		want string
	}{
		{"an id no role has", internalBody(csr, map[string]any{"OwnerRoleId": 99}), U, "OwnerRoleId: no security role has id 99"},
		{"a name no role has", internalBody(csr, map[string]any{"OwnerRoleId": nil, "OwnerRoleName": "ops"}), U, `OwnerRoleName: no security role is called "ops"`},
		{"both forms", internalBody(csr, map[string]any{"OwnerRoleName": "web-owners"}), E, "OwnerRoleId: give OwnerRoleId or OwnerRoleName, not both"},
		{"none where the template requires one", internalBody(csr, map[string]any{"OwnerRoleId": nil}), E, "OwnerRoleId: template Internal requires a certificate owner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			for k, v := range body {
				if v == nil {
					delete(body, k)
				}
			}
			resp := cf.Do(t, "POST", "/Enrollment/CSR", body, "x-certificateformat", "PEM", "Authorization", bearer(ownerToken))
			assertError(t, resp, http.StatusBadRequest, tc.code, tc.want)
		})
	}
	assertNothingStored(t, cf)

	for _, tc := range []struct {
		name     string
		owner    map[string]any
		template string
		id       int64
		role     string
	}{
		{"a configured role by id", map[string]any{"OwnerRoleId": 10}, "Internal", 10, "pki-admins"},
		{"a configured role by name in another case", map[string]any{"OwnerRoleId": nil, "OwnerRoleName": "WEB-OWNERS"}, "Internal", 11, "web-owners"},
		{"a built-in role by name", map[string]any{"OwnerRoleName": "approver"}, "WebServer", 2, "approver"},
		{"no owner where none is required", map[string]any{}, "WebServer", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := internalBody(csr, tc.owner)
			if tc.template == "WebServer" {
				body = testutil.EnrollBody(csr, tc.owner)
			}
			for k, v := range body {
				if v == nil {
					delete(body, k)
				}
			}
			resp, er := enroll(t, cf, body, "Authorization", bearer(ownerToken))
			if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
				t.Fatalf("%d %s", resp.Status, resp.Body)
			}
			id := er.CertificateInformation.KeyfactorRequestId
			req, err := cf.App.Store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if req.Input.OwnerRoleId != tc.id || req.Input.OwnerRoleName != tc.role {
				t.Errorf("request owner = %d %q, want %d %q", req.Input.OwnerRoleId, req.Input.OwnerRoleName, tc.id, tc.role)
			}
			cert, err := cf.App.Store.Certificate(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if cert.OwnerRoleId != tc.id || cert.OwnerRoleName != tc.role {
				t.Errorf("certificate owner = %d %q, want %d %q", cert.OwnerRoleId, cert.OwnerRoleName, tc.id, tc.role)
			}
		})
	}

	t.Run("GET /Security/Roles lists the built-in and configured roles", func(t *testing.T) {
		var raw []map[string]any
		getJSON(t, cf, "/Security/Roles", testutil.AliceToken, &raw)
		hasKeys(t, "a role", raw[0], "Id", "Name", "Description", "Enabled", "Immutable", "Valid", "Private", "Identities", "Permissions")
		var roles []keyfactor.SecurityRole
		getJSON(t, cf, "/Security/Roles", testutil.AliceToken, &roles)
		var got []string
		for _, r := range roles {
			got = append(got, fmt.Sprintf("%d %s %v", r.Id, r.Name, r.Immutable))
		}
		want := []string{"1 requester true", "2 approver true", "3 admin true", "10 pki-admins false", "11 web-owners false"}
		if !slices.Equal(got, want) {
			t.Errorf("roles = %v, want %v", got, want)
		}
	})

	// A client looking a role up by name gets that role or none: before,
	// the query was ignored and the first role came back.
	t.Run("GET /Security/Roles honours pq.queryString", func(t *testing.T) {
		q := func(query string) string { return "/Security/Roles?pq.queryString=" + url.QueryEscape(query) }
		for query, want := range map[string][]string{
			`Name -eq "web-owners"`:                          {"web-owners"},
			`name -eq "WEB-OWNERS"`:                          {"web-owners"},
			`Name -eq "nobody"`:                              {},
			`Name -contains "owner"`:                         {"web-owners"},
			`Name -startswith "a"`:                           {"approver", "admin"},
			`Id -eq 10`:                                      {"pki-admins"},
			`Id -eq "3"`:                                     {"admin"},
			`Name -ne "admin" AND Name -startswith "a"`:      {"approver"},
			`Name -contains "-" AND Id -eq 11`:               {"web-owners"},
			`Name -eq "web-owners" AND Name -eq "requester"`: {},
		} {
			var roles []keyfactor.SecurityRole
			getJSON(t, cf, q(query), testutil.AliceToken, &roles)
			got := []string{}
			for _, r := range roles {
				got = append(got, r.Name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: roles %v, want %v", query, got, want)
			}
		}
		var page []keyfactor.SecurityRole
		getJSON(t, cf, "/Security/Roles?pq.returnLimit=2&pq.pageReturned=2", testutil.AliceToken, &page)
		if len(page) != 2 || page[0].Name != "admin" || page[1].Name != "pki-admins" {
			t.Errorf("page 2 of 2 per page: %+v", page)
		}
		for query, field := range map[string]string{
			`Description -eq "x"`: `pq.queryString: unknown field "Description"`,
			`Name -like "x"`:      "pq.queryString: unknown operator -like",
			`Name -eq`:            "pq.queryString",
		} {
			wantError(t, cf.Do(t, "GET", q(query), nil, "Authorization", bearer(testutil.AliceToken)), 400, keyfactor.CodeInvalidField, field)
		}
	})

	t.Run("GET /Security/Roles/{id}", func(t *testing.T) {
		var raw map[string]any
		getJSON(t, cf, "/Security/Roles/11", testutil.AliceToken, &raw)
		hasKeys(t, "a role", raw, "Id", "Name", "Description", "Enabled", "Immutable", "Valid", "Private", "Identities", "Permissions")
		var role keyfactor.SecurityRole
		getJSON(t, cf, "/Security/Roles/2", testutil.AliceToken, &role)
		if role.Id != 2 || role.Name != "approver" || !role.Immutable {
			t.Errorf("role 2: %+v", role)
		}
		alice := []string{"Authorization", bearer(testutil.AliceToken)}
		wantError(t, cf.Do(t, "GET", "/Security/Roles/99", nil, alice...), 404, keyfactor.CodeNotFound, "security role 99: not found")
		for _, id := range []string{"web-owners", "0", "-1", "1.5", "99999999999999999999"} {
			wantError(t, cf.Do(t, "GET", "/Security/Roles/"+id, nil, alice...), 400, keyfactor.CodeInvalidField, "id: want a positive integer security role id")
		}
		if r := cf.Do(t, "GET", "/Security/Roles/2", nil, "Authorization", ""); r.Status != http.StatusUnauthorized {
			t.Errorf("without credentials: %d", r.Status)
		}
	})
}

func TestMetadataFieldsAnswerKeyfactorsObjects(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, typedMetadataWithDescriptions)
	var raw []map[string]any
	getJSON(t, cf, "/MetadataFields", testutil.AliceToken, &raw)
	hasKeys(t, "a metadata field", raw[0], "Id", "Name", "Description", "DataType", "Hint", "Validation", "Enrollment", "Message", "Options", "DefaultValue", "DisplayOrder")
	var fields []keyfactor.MetadataField
	getJSON(t, cf, "/MetadataFields", testutil.AliceToken, &fields)
	byName := map[string]keyfactor.MetadataField{}
	var order []string
	for _, f := range fields {
		byName[f.Name] = f
		order = append(order, f.Name)
	}
	for name, dataType := range map[string]int{"Team": 1, "CostCenter": 2, "Expires": 3, "Internal": 4, "Env": 5, "Notes": 6, "Owner": 7} {
		if byName[name].DataType != dataType {
			t.Errorf("%s DataType = %d, want %d", name, byName[name].DataType, dataType)
		}
	}
	for name, enrollment := range map[string]int{"Team": 0, "CostCenter": 1, "ApprovedBy": 2} {
		if byName[name].Enrollment != enrollment {
			t.Errorf("%s Enrollment = %d, want %d", name, byName[name].Enrollment, enrollment)
		}
	}
	team := byName["Team"]
	if team.Validation != `[a-z][a-z0-9-]*` || team.Message != "lower-case letters, digits and dashes" || team.Description != "The owning team" || team.Hint != "web, ops, …" {
		t.Errorf("Team = %+v", team)
	}
	if env := byName["Env"]; env.Options != "Prod,Test" || env.DefaultValue != "Test" {
		t.Errorf("Env = %+v", env)
	}
	if order[0] != "Team" || order[len(order)-1] != "RequestedBy" {
		t.Errorf("order %v: want Team (display_order 1) first and RequestedBy (display_order 99) last", order)
	}
	var one keyfactor.MetadataField
	getJSON(t, cf, fmt.Sprintf("/MetadataFields/%d", byName["Env"].Id), testutil.AliceToken, &one)
	if !reflect.DeepEqual(one, byName["Env"]) {
		t.Errorf("GET /MetadataFields/{id} = %+v, want %+v", one, byName["Env"])
	}
	var byNameOne keyfactor.MetadataField
	getJSON(t, cf, "/MetadataFields/costcenter", testutil.AliceToken, &byNameOne)
	if !reflect.DeepEqual(byNameOne, byName["CostCenter"]) {
		t.Errorf("GET /MetadataFields/{name} = %+v, want %+v", byNameOne, byName["CostCenter"])
	}
	assertError(t, cf.Do(t, "GET", "/MetadataFields/Colour", nil), http.StatusNotFound, keyfactor.CodeNotFound, `metadata field "colour"`) // paths are matched lower-cased
	assertError(t, cf.Do(t, "GET", "/MetadataFields/99", nil), http.StatusNotFound, keyfactor.CodeNotFound, "metadata field 99")
	assertError(t, cf.Do(t, "GET", "/MetadataFields/0", nil), http.StatusBadRequest, keyfactor.CodeInvalidField, "id: ")
}

func typedMetadataWithDescriptions(c *config.Config) {
	typedMetadata(c)
	for i := range c.Metadata {
		switch f := &c.Metadata[i]; f.Name {
		case "Team":
			f.Description, f.Hint, f.DisplayOrder = "The owning team", "web, ops, …", 1
		case "RequestedBy":
			f.DisplayOrder = 99
		default:
			f.DisplayOrder = 10 + i
		}
	}
}

// twoCAs serves WebServer from two built-in CAs and adds a standalone one.
func twoCAs(c *config.Config) {
	c.CAs = append(c.CAs,
		config.CA{Name: "SecondCA", Host: "ca2", Type: "builtin", KeyType: "rsa-2048", MaxValidity: 24 * time.Hour},
		config.CA{Name: "Standalone", Host: "ca3", Type: "builtin", KeyType: "ecdsa-p384", Standalone: true, MaxValidity: time.Hour},
	)
	c.Templates[0].CAs = []string{config.DefaultCAName, "SecondCA"}
}

func TestTwoCAsIssueUnderTheirOwnRootsChosenAtRandom(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, twoCAs)
	for _, name := range []string{config.DefaultCAName, "SecondCA", "Standalone"} {
		if _, err := os.Stat(filepath.Join(cf.Config.DataDir, "ca", name, "root.crt")); err != nil {
			t.Errorf("CA %s has no hierarchy of its own under <data-dir>/ca/%s: %v", name, name, err)
		}
	}
	roots := map[string]*x509.Certificate{} // issuing CA's CN → root
	chains := map[string][]*x509.Certificate{}
	const n = 20 // both CAs are used unless 20 fair coins agree: p = 2^-19
	for i := range n {
		name := fmt.Sprintf("r%d.example.com", i)
		csr, _ := testutil.CSR(t, name)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"IncludeChain": true}))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		chain := pemChain(t, er.CertificateInformation.Certificates, true)
		issuer := chain[1].Subject.CommonName
		if _, seen := chains[issuer]; !seen {
			verifyChain(t, chain, name)
			chains[issuer] = chain
		}
		roots[issuer] = chain[2]
	}
	if len(roots) != 2 || roots[config.DefaultCAName] == nil || roots["SecondCA"] == nil {
		t.Fatalf("issuing CAs used over %d requests: %v; want both of the template's", n, slices.Collect(maps.Keys(roots)))
	}
	a, b := roots[config.DefaultCAName], roots["SecondCA"]
	if a.Equal(b) || a.Subject.String() == b.Subject.String() {
		t.Fatal("the two CAs share a root")
	}
	if _, ok := b.PublicKey.(interface{ Size() int }); !ok {
		t.Errorf("SecondCA's root has a %T key, want RSA (its key_type)", b.PublicKey)
	}
	// A leaf of one CA does not verify under the other's root.
	leaf, other := chains["SecondCA"][0], x509.NewCertPool()
	other.AddCert(roots[config.DefaultCAName])
	inter := x509.NewCertPool()
	inter.AddCert(chains["SecondCA"][1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other, Intermediates: inter}); err == nil {
		t.Fatal("a SecondCA certificate verifies under CertflowIssuingCA's root")
	}

	t.Run("GET /CertificateAuthority lists each CA with its own chain", func(t *testing.T) {
		var raw []map[string]any
		getJSON(t, cf, "/CertificateAuthority", testutil.AliceToken, &raw)
		hasKeys(t, "a CA", raw[0], "Id", "LogicalName", "HostName", "Delegate", "Standalone", "MonitorThresholds", "IssuanceMax", "IssuanceMin",
			"DenialMax", "FailureMax", "RFCEnforcement", "Properties", "AllowedEnrollmentTypes", "KeyRetention", "Certificates")
		var cas []keyfactor.CertificateAuthority
		getJSON(t, cf, "/CertificateAuthority", testutil.AliceToken, &cas)
		if len(cas) != 3 || cas[1].LogicalName != "SecondCA" || cas[1].HostName != "ca2" || cas[1].Standalone || !cas[2].Standalone || cas[1].Id != 2 {
			t.Fatalf("CAs = %+v", cas)
		}
		if !strings.Contains(cas[1].Properties, `"KeyType":"rsa-2048"`) {
			t.Errorf("Properties = %s", cas[1].Properties)
		}
		for i, want := range []*x509.Certificate{a, b} {
			if len(cas[i].Certificates) != 2 {
				t.Fatalf("%s has %d certificates, want issuing and root", cas[i].LogicalName, len(cas[i].Certificates))
			}
			block, _ := pem.Decode([]byte(cas[i].Certificates[1]))
			if block == nil || !want.Equal(mustParse(t, block.Bytes)) {
				t.Errorf("%s's second certificate is not the root its certificates chain to", cas[i].LogicalName)
			}
			blk, _ := pem.Decode([]byte(cas[i].Certificates[0]))
			if iss := mustParse(t, blk.Bytes); iss.CheckSignatureFrom(want) != nil || iss.Subject.CommonName != cas[i].LogicalName {
				t.Errorf("%s's first certificate is not its issuing CA under its root", cas[i].LogicalName)
			}
		}
		var one keyfactor.CertificateAuthority
		getJSON(t, cf, "/CertificateAuthority/3", testutil.AliceToken, &one)
		if one.LogicalName != "Standalone" {
			t.Errorf("GET /CertificateAuthority/3 = %+v", one)
		}
		assertError(t, cf.Do(t, "GET", "/CertificateAuthority/4", nil), http.StatusNotFound, keyfactor.CodeNotFound, "certificate authority 4")
	})
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAStandaloneCAIssuesWithoutATemplateWhenNamed(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, twoCAs)
	csr, key := testutil.CSR(t, "standalone.example.com", "standalone.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": nil, "CertificateAuthority": `ca3\Standalone`, "IncludeChain": true}))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	chain := pemChain(t, er.CertificateInformation.Certificates, true)
	verifyChain(t, chain, "standalone.example.com")
	if chain[1].Subject.CommonName != "Standalone" || !chain[0].NotAfter.Before(time.Now().Add(61*time.Minute)) {
		t.Errorf("issued by %s until %s; want the standalone CA, capped at its 1h max validity", chain[1].Subject.CommonName, chain[0].NotAfter)
	}
	if !pki.SamePublicKey(chain[0].PublicKey, key.Public()) {
		t.Error("the certificate does not carry the CSR's key")
	}
	cert, err := cf.App.Store.Certificate(context.Background(), er.CertificateInformation.KeyfactorRequestId)
	if err != nil || cert.Template != "" || cert.Authority != `ca3\Standalone` {
		t.Errorf("certificate record: %+v (%v); want no template and the standalone authority", cert, err)
	}
	const E, U = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
		want string
	}{
		{"neither Template nor CertificateAuthority", testutil.EnrollBody(csr, map[string]any{"Template": nil}), E, "Template: required unless CertificateAuthority names a standalone CA"},
		{"a CA that is not standalone, without a template", testutil.EnrollBody(csr, map[string]any{"Template": nil, "CertificateAuthority": "SecondCA"}), E, "Template: required unless CertificateAuthority names a standalone CA"},
		{"the standalone CA with a template it does not serve", testutil.EnrollBody(csr, map[string]any{"CertificateAuthority": "Standalone"}), E, "CertificateAuthority: Standalone does not serve template WebServer"},
		{"the standalone CA on the wrong host", testutil.EnrollBody(csr, map[string]any{"Template": nil, "CertificateAuthority": `ca2\Standalone`}), U, "CertificateAuthority: unknown certificate authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.body {
				if v == nil {
					delete(tc.body, k)
				}
			}
			assertError(t, cf.Do(t, "POST", "/Enrollment/CSR", tc.body, "x-certificateformat", "PEM"), http.StatusBadRequest, tc.code, tc.want)
		})
	}
}

func TestRFC2818EnforcementAtEnrollment(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	t.Run("a DNS common name without SANs becomes the DNS SAN", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "cn-only.example.com")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		chain := pemChain(t, er.CertificateInformation.Certificates, true)
		if !slices.Equal(chain[0].DNSNames, []string{"cn-only.example.com"}) {
			t.Fatalf("DNS SANs = %v", chain[0].DNSNames)
		}
	})
	t.Run("an IP common name becomes an IP SAN", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "192.0.2.10")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		chain := pemChain(t, er.CertificateInformation.Certificates, true)
		if len(chain[0].IPAddresses) != 1 || chain[0].IPAddresses[0].String() != "192.0.2.10" {
			t.Fatalf("IP SANs = %v", chain[0].IPAddresses)
		}
	})
	for _, tc := range []struct{ name, cn string }{
		{"a common name that is not a DNS name and no SANs is refused", "My Web Server"},
		{"a single-label common name and no SANs is refused", "intranet"},
		{"no common name and no SANs is refused", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, _ := testutil.CSR(t, tc.cn)
			resp, _ := enroll(t, cf, testutil.EnrollBody(csr, nil))
			assertError(t, resp, http.StatusBadRequest, keyfactor.CodePolicy, "CSR: template WebServer enforces RFC 2818: the request needs a DNS or IP subject alternative name")
		})
	}
	t.Run("without enforcement such a request is issued without SANs", func(t *testing.T) {
		cf := testutil.StartCertflow(t, func(c *config.Config) { c.Templates[0].RFCEnforcement = false })
		csr, _ := testutil.CSR(t, "My Web Server")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		chain := pemChain(t, er.CertificateInformation.Certificates, true)
		if er.CertificateInformation.RequestDisposition != "ISSUED" || len(chain[0].DNSNames) != 0 {
			t.Fatalf("%s, DNS SANs %v", er.CertificateInformation.RequestDisposition, chain[0].DNSNames)
		}
	})
}

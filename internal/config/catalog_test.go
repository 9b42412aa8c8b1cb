package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestCatalogSettingsValidation(t *testing.T) {
	t.Parallel()
	fields := []MetaField{
		{Name: "Team", Type: "String", Validation: `[a-z]+`, Message: "lower-case"},
		{Name: "CostCenter", Type: "Integer"},
		{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}},
	}
	tests := []struct {
		name   string
		change func(c *Config, t *Template)
		want   []string // one substring per expected error, in order; none: valid
	}{
		{
			name: "every new setting, well formed, is valid",
			change: func(c *Config, t *Template) {
				c.SecurityRoles = []SecurityRole{{ID: 10, Name: "pki-admins", Description: "PKI team"}, {ID: 11, Name: "web-owners"}}
				t.AllowedRequesters = []string{"web-owners", "requester"}
				t.MetadataFields = []TemplateMetaField{
					{Name: "team", Enrollment: "required", Validation: `[a-z]{2,}`, Message: "two letters or more"},
					{Name: "CostCenter", Enrollment: "Hidden", DefaultValue: "+42"},
					{Name: "Env", DefaultValue: "Prod"},
				}
				t.EnrollmentFields = []EnrollmentField{
					{Name: "Ticket", Required: true},
					{Name: "Zone", Type: "multiplechoice", Options: []string{"dmz", "lan"}},
				}
				c.Metadata[0].DisplayOrder = 3
			},
		},
		{
			name:   "a security role id among the built-in roles'",
			change: func(c *Config, _ *Template) { c.SecurityRoles = []SecurityRole{{ID: 3, Name: "ops"}} },
			want:   []string{"security_roles[0].id: 3; configured roles' ids start at 10"},
		},
		{
			name: "a security role id twice",
			change: func(c *Config, _ *Template) {
				c.SecurityRoles = []SecurityRole{{ID: 10, Name: "a"}, {ID: 10, Name: "b"}}
			},
			want: []string{"security_roles[1].id: 10 appears twice"},
		},
		{
			name: "a security role name twice, ignoring case",
			change: func(c *Config, _ *Template) {
				c.SecurityRoles = []SecurityRole{{ID: 10, Name: "Ops"}, {ID: 11, Name: "ops"}}
			},
			want: []string{`security_roles[1].name: "ops" appears twice`},
		},
		{
			name:   "a security role named like a built-in role",
			change: func(c *Config, _ *Template) { c.SecurityRoles = []SecurityRole{{ID: 10, Name: "Approver"}} },
			want:   []string{`security_roles[0].name: "Approver" is a built-in role; it has id 2 already`},
		},
		{
			name:   "a security role without a name",
			change: func(c *Config, _ *Template) { c.SecurityRoles = []SecurityRole{{ID: 12}} },
			want:   []string{`security_roles[0].name: "" is not a role name`},
		},
		{
			name:   "an allowed requester that is not a role name",
			change: func(_ *Config, t *Template) { t.AllowedRequesters = []string{"web owners"} },
			want:   []string{`templates[0].allowed_requesters: "web owners" is not a role name`},
		},
		{
			name:   "a template metadata field that is not configured",
			change: func(_ *Config, t *Template) { t.MetadataFields = []TemplateMetaField{{Name: "Colour"}} },
			want:   []string{`templates[0].metadata_fields[0].name: "Colour" is not one of metadata_fields`},
		},
		{
			name: "a template metadata field twice",
			change: func(_ *Config, t *Template) {
				t.MetadataFields = []TemplateMetaField{{Name: "Team"}, {Name: "team", Enrollment: "Required"}}
			},
			want: []string{`templates[0].metadata_fields[1].name: "Team" appears twice`},
		},
		{
			name: "a template metadata field with an unknown enrollment",
			change: func(_ *Config, t *Template) {
				t.MetadataFields = []TemplateMetaField{{Name: "Team", Enrollment: "Always"}}
			},
			want: []string{`templates[0].metadata_fields[0].enrollment: "Always" (want Optional, Required, Hidden)`},
		},
		{
			name: "a template pattern on a field that is not String",
			change: func(_ *Config, t *Template) {
				t.MetadataFields = []TemplateMetaField{{Name: "CostCenter", Validation: `\d+`}}
			},
			want: []string{"templates[0].metadata_fields[0].validation: only String fields have a validation pattern (CostCenter is Integer)"},
		},
		{
			name: "a template pattern that does not compile",
			change: func(_ *Config, t *Template) {
				t.MetadataFields = []TemplateMetaField{{Name: "Team", Validation: `([a-z]`}}
			},
			want: []string{"templates[0].metadata_fields[0].validation: error parsing regexp"},
		},
		{
			name: "a template default the field's type refuses",
			change: func(_ *Config, t *Template) {
				t.MetadataFields = []TemplateMetaField{{Name: "Env", DefaultValue: "prod"}}
			},
			want: []string{`templates[0].metadata_fields[0].default_value: "prod" is not one of the options (Prod, Test)`},
		},
		{
			name: "a template default checked against the template's own pattern",
			change: func(_ *Config, t *Template) {
				t.MetadataFields = []TemplateMetaField{{Name: "Team", Validation: `[A-Z]+`, Message: "upper-case", DefaultValue: "web"}}
			},
			want: []string{"templates[0].metadata_fields[0].default_value: upper-case"},
		},
		{
			name:   "an enrollment field with an unknown type",
			change: func(_ *Config, t *Template) { t.EnrollmentFields = []EnrollmentField{{Name: "Zone", Type: "Integer"}} },
			want:   []string{`templates[0].enrollment_fields[0].type: "Integer" (want String or MultipleChoice)`},
		},
		{
			name: "a MultipleChoice enrollment field without options",
			change: func(_ *Config, t *Template) {
				t.EnrollmentFields = []EnrollmentField{{Name: "Zone", Type: "MultipleChoice"}}
			},
			want: []string{"templates[0].enrollment_fields[0].options: a MultipleChoice field needs at least one option"},
		},
		{
			name: "a MultipleChoice enrollment field with a repeated option",
			change: func(_ *Config, t *Template) {
				t.EnrollmentFields = []EnrollmentField{{Name: "Zone", Type: "MultipleChoice", Options: []string{"dmz", "dmz"}}}
			},
			want: []string{`templates[0].enrollment_fields[0].options: "dmz" is empty or repeated`},
		},
		{
			name: "a String enrollment field with options",
			change: func(_ *Config, t *Template) {
				t.EnrollmentFields = []EnrollmentField{{Name: "Ticket", Options: []string{"a"}}}
			},
			want: []string{"templates[0].enrollment_fields[0].options: only MultipleChoice fields have options"},
		},
		{
			name: "an enrollment field name twice, ignoring case",
			change: func(_ *Config, t *Template) {
				t.EnrollmentFields = []EnrollmentField{{Name: "Ticket"}, {Name: "TICKET"}}
			},
			want: []string{`templates[0].enrollment_fields[1].name: "TICKET" appears twice`},
		},
		{
			name:   "an enrollment field without a name",
			change: func(_ *Config, t *Template) { t.EnrollmentFields = []EnrollmentField{{}} },
			want:   []string{`templates[0].enrollment_fields[0].name: "" is not a valid name`},
		},
		{
			name: "a template served by a standalone CA",
			change: func(c *Config, t *Template) {
				c.CAs = append(c.CAs, CA{Name: "Partner", Host: "p", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: 1})
				t.CAs = append(t.CAs, "partner")
			},
			want: []string{"templates[0].certificate_authorities: partner is standalone: it serves requests that name it, without a template"},
		},
		{
			name:   "a negative display order",
			change: func(c *Config, _ *Template) { c.Metadata[1].DisplayOrder = -1 },
			want:   []string{"metadata_fields[1].display_order: must be positive"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.Metadata = append([]MetaField(nil), fields...)
			tt.change(&c, &c.Templates[0])
			errs := joined(c.Validate())
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate() = %v\nwant %d errors: %q", errs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q\nwant it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestCatalogSettingsLoadFromYAMLNormalized(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
security_roles:
  - {id: 10, name: pki-admins, description: The PKI team}
metadata_fields:
  - {name: Team, validation: '[a-z]+'}
  - {name: CostCenter, type: integer}
templates:
  - name: Internal
    allowed_requesters: [pki-admins]
    require_owner_role: true
    metadata_fields:
      - {name: costcenter, enrollment: required, default_value: "007"}
    enrollment_fields:
      - {name: Ticket, required: true}
      - {name: Zone, type: multiplechoice, options: [dmz, lan]}
`)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tmpl, ok := c.Template("internal")
	if !ok {
		t.Fatal("template Internal missing")
	}
	wantMD := []TemplateMetaField{{Name: "CostCenter", Enrollment: "Required", DefaultValue: "7"}}
	if !reflect.DeepEqual(tmpl.MetadataFields, wantMD) {
		t.Errorf("metadata_fields = %+v\nwant %+v (configured spelling, normalized default)", tmpl.MetadataFields, wantMD)
	}
	wantEF := []EnrollmentField{{Name: "Ticket", Type: "String", Required: true}, {Name: "Zone", Type: "MultipleChoice", Options: []string{"dmz", "lan"}}}
	if !reflect.DeepEqual(tmpl.EnrollmentFields, wantEF) {
		t.Errorf("enrollment_fields = %+v\nwant %+v", tmpl.EnrollmentFields, wantEF)
	}
	if r, ok := c.RoleByName("PKI-ADMINS"); !ok || r.ID != 10 || r.Description != "The PKI team" {
		t.Errorf("RoleByName(PKI-ADMINS) = %+v, %v", r, ok)
	}
	if r, ok := c.RoleByID(2); !ok || r.Name != RoleApprover {
		t.Errorf("RoleByID(2) = %+v, %v; want the built-in approver", r, ok)
	}
	if _, ok := c.RoleByID(11); ok {
		t.Error("RoleByID(11) found a role that is not configured")
	}
	bad := writeConfig(t, "security_roles:\n  - {id: 1, name: x}\n")
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "security_roles[0].id") {
		t.Errorf("Load with a built-in id = %v, want an error naming security_roles[0].id", err)
	}
}

func TestTemplateMetaFieldAppliesTheOverride(t *testing.T) {
	t.Parallel()
	global := &MetaField{Name: "Team", Type: "String", Enrollment: "Optional", Validation: "[a-z]+", Message: "lower", DefaultValue: "web"}
	tests := []struct {
		name     string
		template *Template
		want     MetaField
	}{
		{"no template: the field itself", nil, *global},
		{"a template without overrides: the field itself", &Template{Name: "T"}, *global},
		{
			"enrollment and default replaced, pattern kept",
			&Template{MetadataFields: []TemplateMetaField{{Name: "team", Enrollment: "Required", DefaultValue: "ops"}}},
			MetaField{Name: "Team", Type: "String", Enrollment: "Required", Validation: "[a-z]+", Message: "lower", DefaultValue: "ops"},
		},
		{
			"a new pattern brings its own message, even none",
			&Template{MetadataFields: []TemplateMetaField{{Name: "Team", Validation: "[A-Z]+"}}},
			MetaField{Name: "Team", Type: "String", Enrollment: "Optional", Validation: "[A-Z]+", DefaultValue: "web"},
		},
		{
			"another field's override does not apply",
			&Template{MetadataFields: []TemplateMetaField{{Name: "Env", Enrollment: "Hidden"}}},
			*global,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.template.MetaField(global); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMayEnroll(t *testing.T) {
	t.Parallel()
	open, closed := &Template{Name: "Open"}, &Template{Name: "Closed", Policy: Policy{AllowedRequesters: []string{"web-owners"}}}
	tests := []struct {
		name     string
		template *Template
		roles    []string
		want     bool
	}{
		{"any requester may use a template without allowed requesters", open, []string{"requester"}, true},
		{"an approver who is not a requester may not enroll", open, []string{"approver"}, false},
		{"a requester without the allowed role may not", closed, []string{"requester"}, false},
		{"a requester with the allowed role may", closed, []string{"requester", "web-owners"}, true},
		{"the allowed role alone, without requester, is not enough", closed, []string{"web-owners"}, false},
		{"admin may use every template", closed, []string{"admin"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.template.MayEnroll(tt.roles); got != tt.want {
				t.Errorf("MayEnroll(%v) = %v, want %v", tt.roles, got, tt.want)
			}
		})
	}
}

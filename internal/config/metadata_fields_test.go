package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestMetadataFieldsValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		fields []MetaField
		want   []string // one substring per expected error, in order; none: valid
	}{
		{
			name: "every type with its settings is valid",
			fields: []MetaField{
				{Name: "Team", Type: "String", Validation: `[a-z-]+`, Message: "lower-case letters and dashes"},
				{Name: "CostCenter", Type: "Integer", DefaultValue: "100"},
				{Name: "Expires", Type: "Date"},
				{Name: "Internal", Type: "Boolean", Enrollment: "Required"},
				{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}, DefaultValue: "Test"},
				{Name: "Notes", Type: "BigText", Enrollment: "Hidden"},
				{Name: "Owner", Type: "Email", DefaultValue: "pki@example.com"},
			},
		},
		{
			name:   "a name that is not a valid name",
			fields: []MetaField{{Name: "Cost Center"}},
			want:   []string{`metadata_fields[0].name: "Cost Center" is not a valid name`},
		},
		{
			name:   "an empty name",
			fields: []MetaField{{Type: "String"}},
			want:   []string{`metadata_fields[0].name: "" is not a valid name`},
		},
		{
			name:   "the same name twice, ignoring case",
			fields: []MetaField{{Name: "Owner"}, {Name: "Team"}, {Name: "owner"}},
			want:   []string{`metadata_fields[2].name: "owner" appears twice`},
		},
		{
			name:   "an unknown type",
			fields: []MetaField{{Name: "A"}, {Name: "Ratio", Type: "Float"}},
			want:   []string{`metadata_fields[1].type: "Float" is not a metadata field type (want String, Integer, Date, Boolean, MultipleChoice, BigText, Email)`},
		},
		{
			name:   "an unknown enrollment",
			fields: []MetaField{{Name: "A", Enrollment: "Mandatory"}},
			want:   []string{`metadata_fields[0].enrollment: "Mandatory" (want Optional, Required, Hidden)`},
		},
		{
			name:   "a validation pattern that does not compile",
			fields: []MetaField{{Name: "A"}, {Name: "B"}, {Name: "Team", Validation: `([a-z]+`}},
			want:   []string{"metadata_fields[2].validation: error parsing regexp: missing closing )"},
		},
		{
			name:   "a pattern valid only once anchored is refused",
			fields: []MetaField{{Name: "Team", Validation: `a)|(b`}},
			want:   []string{"metadata_fields[0].validation: error parsing regexp"},
		},
		{
			name:   "a validation pattern on a type that has none",
			fields: []MetaField{{Name: "Count", Type: "Integer", Validation: `\d+`}},
			want:   []string{"metadata_fields[0].validation: only String fields have a validation pattern"},
		},
		{
			name:   "MultipleChoice without options",
			fields: []MetaField{{Name: "Env", Type: "MultipleChoice", DefaultValue: "Prod"}},
			want:   []string{"metadata_fields[0].options: a MultipleChoice field needs at least one option"},
		},
		{
			name:   "options on a type that has none",
			fields: []MetaField{{Name: "Env", Type: "String", Options: []string{"Prod"}}},
			want:   []string{"metadata_fields[0].options: only MultipleChoice fields have options"},
		},
		{
			name:   "a default that is not an integer",
			fields: []MetaField{{Name: "Count", Type: "Integer", DefaultValue: "ten"}},
			want:   []string{`metadata_fields[0].default_value: "ten" is not a whole number`},
		},
		{
			name:   "a default that is not one of the options",
			fields: []MetaField{{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}, DefaultValue: "prod"}},
			want:   []string{`metadata_fields[0].default_value: "prod" is not one of the options (Prod, Test)`},
		},
		{
			name:   "a default that fails its own pattern shows the message",
			fields: []MetaField{{Name: "Team", Validation: `[a-z]+`, Message: "lower-case letters only", DefaultValue: "Web"}},
			want:   []string{"metadata_fields[0].default_value: lower-case letters only"},
		},
		{
			name: "a default of each other type that does not pass",
			fields: []MetaField{
				{Name: "A", Type: "Date", DefaultValue: "tomorrow"},
				{Name: "B", Type: "Boolean", DefaultValue: "yes"},
				{Name: "C", Type: "Email", DefaultValue: "PKI <pki@example.com>"},
				{Name: "D", Type: "String", DefaultValue: strings.Repeat("x", 4001)},
			},
			want: []string{
				`metadata_fields[0].default_value: "tomorrow" is not a date`,
				`metadata_fields[1].default_value: "yes" is not a boolean`,
				`metadata_fields[2].default_value: "PKI <pki@example.com>" is not an email address`,
				"metadata_fields[3].default_value: 4001 characters; at most 4000",
			},
		},
		{
			name:   "a default is not checked against a type that is unknown",
			fields: []MetaField{{Name: "A", Type: "Float", DefaultValue: "x"}},
			want:   []string{`metadata_fields[0].type: "Float"`},
		},
		{
			name:   "several mistakes in one field are all reported",
			fields: []MetaField{{Name: "bad name", Type: "Integer", Enrollment: "Always", DefaultValue: "1.5"}},
			want: []string{
				"metadata_fields[0].name:",
				"metadata_fields[0].enrollment:",
				"metadata_fields[0].default_value:",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.Metadata = tt.fields
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

func TestMetadataFieldsDefaultsAndSpellingAreFilledIn(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Metadata = []MetaField{
		{Name: "Team"},
		{Name: "Count", Type: "integer", Enrollment: "required", DefaultValue: "+007"},
		{Name: "Internal", Type: "BOOLEAN", Enrollment: "hidden", DefaultValue: "TRUE"},
		{Name: "Env", Type: "multiplechoice", Options: []string{"Prod"}},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := []MetaField{
		{Name: "Team", Type: "String", Enrollment: "Optional"},
		{Name: "Count", Type: "Integer", Enrollment: "Required", DefaultValue: "7"},
		{Name: "Internal", Type: "Boolean", Enrollment: "Hidden", DefaultValue: "true"},
		{Name: "Env", Type: "MultipleChoice", Enrollment: "Optional", Options: []string{"Prod"}},
	}
	if !reflect.DeepEqual(c.Metadata, want) {
		t.Errorf("after Validate:\n got %+v\nwant %+v", c.Metadata, want)
	}
	// Validating again changes nothing.
	if err := c.Validate(); err != nil || !reflect.DeepEqual(c.Metadata, want) {
		t.Errorf("second Validate: %v, %+v", err, c.Metadata)
	}
}

func TestMetadataFieldsLoadFromYAML(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
metadata_fields:
  - name: Team
    type: String
    enrollment: Required
    validation: '[a-z][a-z0-9-]*'
    message: lower-case letters, digits and dashes
  - name: Env
    type: MultipleChoice
    options: [Prod, Test]
    default_value: Test
`)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []MetaField{
		{Name: "Team", Type: "String", Enrollment: "Required", Validation: "[a-z][a-z0-9-]*", Message: "lower-case letters, digits and dashes"},
		{Name: "Env", Type: "MultipleChoice", Enrollment: "Optional", DefaultValue: "Test", Options: []string{"Prod", "Test"}},
	}
	if !reflect.DeepEqual(c.Metadata, want) {
		t.Errorf("loaded:\n got %+v\nwant %+v", c.Metadata, want)
	}

	bad := writeConfig(t, "metadata_fields:\n  - {name: Ratio, type: Float}\n")
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), `metadata_fields[0].type: "Float"`) {
		t.Errorf("Load with an unknown type = %v, want an error naming metadata_fields[0].type", err)
	}
}

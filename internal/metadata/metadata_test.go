package metadata_test

import (
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/metadata"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	hostname := metadata.Field{Validation: `[a-z]+\.example\.com`}
	withMessage := metadata.Field{Type: "String", Validation: `[A-Z]{3}-\d+`, Message: "want a ticket like ABC-123"}
	choice := metadata.Field{Type: "MultipleChoice", Options: []string{"Prod", "Test", "Dev"}}
	tests := []struct {
		name    string
		field   metadata.Field
		value   string
		want    string // the normalized value when wantErr is empty
		wantErr string // a substring of the error
	}{
		// String
		{name: "String takes any text", field: metadata.Field{Type: "String"}, value: "web team", want: "web team"},
		{name: "an empty type is String", value: "anything", want: "anything"},
		{name: "the type ignores case", field: metadata.Field{Type: "string"}, value: "x", want: "x"},
		{name: "String may be empty", field: metadata.Field{Type: "String"}, value: "", want: ""},
		{name: "String at 4000 characters", value: strings.Repeat("é", 4000), want: strings.Repeat("é", 4000)},
		{name: "String over 4000 characters", value: strings.Repeat("a", 4001), wantErr: "4001 characters; at most 4000"},
		{name: "String not UTF-8", value: "a\xffb", wantErr: "not valid UTF-8"},
		{name: "String matching its pattern", field: hostname, value: "www.example.com", want: "www.example.com"},
		{name: "the pattern must match the whole value, not a prefix", field: hostname, value: "www.example.com.evil", wantErr: "does not match the pattern"},
		{name: "the pattern must match the whole value, not a suffix", field: hostname, value: "x/www.example.com", wantErr: `does not match the pattern [a-z]+\.example\.com`},
		{name: "an alternation is anchored as a whole", field: metadata.Field{Validation: `a|b`}, value: "ab", wantErr: "does not match"},
		{name: "the message replaces the default error", field: withMessage, value: "abc-1", wantErr: "want a ticket like ABC-123"},
		{name: "a value matching a pattern with a message", field: withMessage, value: "ABC-42", want: "ABC-42"},
		{name: "a pattern that does not compile", field: metadata.Field{Validation: `a)|(b`}, value: "a", wantErr: "validation pattern does not compile"},

		// BigText
		{name: "BigText takes long text", field: metadata.Field{Type: "BigText"}, value: strings.Repeat("a", 5000), want: strings.Repeat("a", 5000)},
		{name: "BigText at 64 KiB", field: metadata.Field{Type: "BigText"}, value: strings.Repeat("a", 64<<10), want: strings.Repeat("a", 64<<10)},
		{name: "BigText over 64 KiB", field: metadata.Field{Type: "BigText"}, value: strings.Repeat("a", 64<<10+1), wantErr: "65537 bytes; at most 65536"},
		{name: "BigText ignores a pattern", field: metadata.Field{Type: "BigText", Validation: "x"}, value: "y", want: "y"},

		// Integer
		{name: "Integer", field: metadata.Field{Type: "Integer"}, value: "42", want: "42"},
		{name: "Integer negative", field: metadata.Field{Type: "Integer"}, value: "-17", want: "-17"},
		{name: "Integer loses its plus and leading zeros", field: metadata.Field{Type: "Integer"}, value: "+007", want: "7"},
		{name: "Integer minus zero is zero", field: metadata.Field{Type: "Integer"}, value: "-000", want: "0"},
		{name: "Integer at the int64 limit", field: metadata.Field{Type: "Integer"}, value: "9223372036854775807", want: "9223372036854775807"},
		{name: "Integer past the int64 limit", field: metadata.Field{Type: "Integer"}, value: "9223372036854775808", wantErr: "does not fit a 64-bit integer"},
		{name: "Integer with a fraction", field: metadata.Field{Type: "Integer"}, value: "1.5", wantErr: `"1.5" is not a whole number`},
		{name: "Integer in hex", field: metadata.Field{Type: "Integer"}, value: "0x10", wantErr: "not a whole number"},
		{name: "Integer with underscores", field: metadata.Field{Type: "Integer"}, value: "1_000", wantErr: "not a whole number"},
		{name: "Integer with spaces", field: metadata.Field{Type: "Integer"}, value: " 7", wantErr: "not a whole number"},
		{name: "Integer empty", field: metadata.Field{Type: "Integer"}, value: "", wantErr: "not a whole number"},
		{name: "Integer with two signs", field: metadata.Field{Type: "Integer"}, value: "+-7", wantErr: "not a whole number"},
		{name: "Integer a sign alone", field: metadata.Field{Type: "Integer"}, value: "-", wantErr: "not a whole number"},
		{name: "Integer with a trailing sign", field: metadata.Field{Type: "Integer"}, value: "7-", wantErr: "not a whole number"},
		{name: "Integer words", field: metadata.Field{Type: "Integer"}, value: "seven", wantErr: "not a whole number"},

		// Date
		{name: "Date", field: metadata.Field{Type: "Date"}, value: "2025-03-01", want: "2025-03-01"},
		{name: "Date leap day", field: metadata.Field{Type: "Date"}, value: "2024-02-29", want: "2024-02-29"},
		{name: "Date RFC 3339 in UTC", field: metadata.Field{Type: "Date"}, value: "2025-03-01T10:20:30Z", want: "2025-03-01T10:20:30Z"},
		{name: "Date RFC 3339 with an offset and a fraction", field: metadata.Field{Type: "Date"}, value: "2025-03-01T10:20:30.500+02:00", want: "2025-03-01T10:20:30.5+02:00"},
		{name: "Date RFC 3339 at offset zero", field: metadata.Field{Type: "Date"}, value: "2025-03-01T10:20:30+00:00", want: "2025-03-01T10:20:30Z"},
		{name: "Date not a leap year", field: metadata.Field{Type: "Date"}, value: "2025-02-29", wantErr: "is not a date"},
		{name: "Date month 13", field: metadata.Field{Type: "Date"}, value: "2025-13-01", wantErr: "is not a date"},
		{name: "Date without zero padding", field: metadata.Field{Type: "Date"}, value: "2025-3-1", wantErr: "is not a date"},
		{name: "Date in US order", field: metadata.Field{Type: "Date"}, value: "03/01/2025", wantErr: "want 2006-01-02 or an RFC 3339 timestamp"},
		{name: "Date timestamp without a zone", field: metadata.Field{Type: "Date"}, value: "2025-03-01T10:20:30", wantErr: "is not a date"},
		{name: "Date empty", field: metadata.Field{Type: "Date"}, value: "", wantErr: "is not a date"},

		// Boolean
		{name: "Boolean true", field: metadata.Field{Type: "Boolean"}, value: "true", want: "true"},
		{name: "Boolean TRUE", field: metadata.Field{Type: "Boolean"}, value: "TRUE", want: "true"},
		{name: "Boolean False", field: metadata.Field{Type: "Boolean"}, value: "False", want: "false"},
		{name: "Boolean yes", field: metadata.Field{Type: "Boolean"}, value: "yes", wantErr: `"yes" is not a boolean (want true or false)`},
		{name: "Boolean 1", field: metadata.Field{Type: "Boolean"}, value: "1", wantErr: "is not a boolean"},
		{name: "Boolean empty", field: metadata.Field{Type: "Boolean"}, value: "", wantErr: "is not a boolean"},

		// MultipleChoice
		{name: "MultipleChoice one of the options", field: choice, value: "Test", want: "Test"},
		{name: "MultipleChoice in another case", field: choice, value: "test", wantErr: `"test" is not one of the options (Prod, Test, Dev)`},
		{name: "MultipleChoice not an option", field: choice, value: "Staging", wantErr: "is not one of the options"},
		{name: "MultipleChoice empty", field: choice, value: "", wantErr: "is not one of the options"},

		// Email
		{name: "Email", field: metadata.Field{Type: "Email"}, value: "pki@example.com", want: "pki@example.com"},
		{name: "Email with a plus", field: metadata.Field{Type: "Email"}, value: "pki+certs@sub.example.com", want: "pki+certs@sub.example.com"},
		{name: "Email with a display name", field: metadata.Field{Type: "Email"}, value: "PKI <pki@example.com>", wantErr: "is not an email address"},
		{name: "Email in angle brackets", field: metadata.Field{Type: "Email"}, value: "<pki@example.com>", wantErr: "is not an email address"},
		{name: "Email with a comment", field: metadata.Field{Type: "Email"}, value: "pki@example.com (PKI)", wantErr: "is not an email address"},
		{name: "Email without a domain", field: metadata.Field{Type: "Email"}, value: "pki", wantErr: `"pki" is not an email address`},
		{name: "Email two addresses", field: metadata.Field{Type: "Email"}, value: "a@example.com, b@example.com", wantErr: "is not an email address"},
		{name: "Email empty", field: metadata.Field{Type: "Email"}, value: "", wantErr: "is not an email address"},

		// The rule itself
		{name: "an unknown type", field: metadata.Field{Type: "Float"}, value: "1.5", wantErr: `unknown field type "Float"`},
		{name: "a long bad value is cut in the message", field: metadata.Field{Type: "Integer"}, value: strings.Repeat("9", 100) + "x", wantErr: strings.Repeat("9", 37) + `..." is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := metadata.Check(tt.field, tt.value)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Check(%q) = %q, want an error containing %q", tt.value, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Check(%q) error = %q, want it to contain %q", tt.value, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check(%q): %v", tt.value, err)
			}
			if got != tt.want {
				t.Fatalf("Check(%q) = %q, want %q", tt.value, got, tt.want)
			}
		})
	}
}

func TestCheckErrorsDoNotStartWithAFieldName(t *testing.T) {
	t.Parallel()
	// Callers prefix "Metadata.<Name>: "; an error that starts with
	// "Metadata" or a colon would read twice.
	for _, typ := range metadata.Types {
		_, err := metadata.Check(metadata.Field{Type: typ, Validation: "x", Options: []string{"a"}}, strings.Repeat("\x01", 70000))
		if err == nil {
			t.Fatalf("%s accepted 70000 control characters", typ)
		}
		if msg := err.Error(); strings.HasPrefix(msg, "Metadata") || strings.Contains(msg, typ+":") {
			t.Errorf("%s: error %q names the field", typ, msg)
		}
	}
}

func TestTypeName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"": "String", "string": "String", "INTEGER": "Integer", "multiplechoice": "MultipleChoice",
		"BigText": "BigText", "email": "Email", "date": "Date", "boolean": "Boolean",
	} {
		if got, ok := metadata.TypeName(in); !ok || got != want {
			t.Errorf("TypeName(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"Float", "Text", "Multiple Choice", " String"} {
		if got, ok := metadata.TypeName(in); ok {
			t.Errorf("TypeName(%q) = %q, want unknown", in, got)
		}
	}
}

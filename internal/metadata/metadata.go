// Package metadata checks certificate metadata values against Keyfactor's
// field types. It is one function, Check, shared by the configuration (a
// field's default value), the enrollment API (the request's Metadata) and
// the workflow's metadata step, so that a value is held to the same rule
// wherever it is set.
//
// It does not import the configuration: config validates its fields with
// Check, so the rule a field imposes is passed as a Field.
package metadata

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Keyfactor's metadata field types.
const (
	String         = "String"
	Integer        = "Integer"
	Date           = "Date"
	Boolean        = "Boolean"
	MultipleChoice = "MultipleChoice"
	BigText        = "BigText"
	Email          = "Email"
)

// Types lists the field types in Keyfactor's order.
var Types = []string{String, Integer, Date, Boolean, MultipleChoice, BigText, Email}

// How a field takes part in enrollment.
const (
	Optional = "Optional"
	Required = "Required"
	Hidden   = "Hidden" // set by workflows, never by the request
)

// Enrollments lists the enrollment settings.
var Enrollments = []string{Optional, Required, Hidden}

// Keyfactor's length limits.
const (
	MaxStringChars = 4000     // String, in characters
	MaxBigTextSize = 64 << 10 // BigText, in bytes
)

// Field is the rule a field imposes on its values.
type Field struct {
	// Type is one of Types, in any case; empty means String.
	Type string
	// Validation (String only) is a regular expression the whole value must
	// match.
	Validation string
	// Message (String only) is the error when Validation does not match.
	Message string
	// Options (MultipleChoice only) are the allowed values, exact case.
	Options []string
}

// TypeName returns Keyfactor's spelling of a field type given in any case;
// empty is String. ok is false for an unknown type.
func TypeName(s string) (name string, ok bool) {
	if s == "" {
		return String, true
	}
	for _, t := range Types {
		if strings.EqualFold(t, s) {
			return t, true
		}
	}
	return "", false
}

// Check reports whether value is valid for f and returns it normalized:
// Integer without sign or leading zeros when positive, Boolean as "true" or
// "false", Date as 2006-01-02 (a timestamp as RFC 3339). Its errors are short
// sentences that leave naming the field to the caller.
func Check(f Field, value string) (normalized string, err error) {
	typ, ok := TypeName(f.Type)
	if !ok {
		return "", fmt.Errorf("unknown field type %q", f.Type)
	}
	if !utf8.ValidString(value) {
		return "", errors.New("not valid UTF-8")
	}
	switch typ {
	case String:
		if n := utf8.RuneCountInString(value); n > MaxStringChars {
			return "", fmt.Errorf("%d characters; at most %d are allowed", n, MaxStringChars)
		}
		if f.Validation != "" {
			re, err := pattern(f.Validation)
			if err != nil {
				return "", err
			}
			if !re.MatchString(value) {
				if f.Message != "" {
					return "", errors.New(f.Message)
				}
				return "", fmt.Errorf("does not match the pattern %s", f.Validation)
			}
		}
		return value, nil
	case BigText:
		if len(value) > MaxBigTextSize {
			return "", fmt.Errorf("%d bytes; at most %d are allowed", len(value), MaxBigTextSize)
		}
		return value, nil
	case Integer:
		// The syntax first: ParseInt reports a range error for "99…9x".
		digits := strings.TrimLeft(value, "+-")
		if digits == "" || len(value)-len(digits) > 1 || strings.Trim(digits, "0123456789") != "" {
			return "", fmt.Errorf("%s is not a whole number", short(value))
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%s does not fit a 64-bit integer", short(value))
		}
		return strconv.FormatInt(n, 10), nil
	case Date:
		if d, err := time.Parse(time.DateOnly, value); err == nil {
			return d.Format(time.DateOnly), nil
		}
		if ts, err := time.Parse(time.RFC3339Nano, value); err == nil {
			return ts.Format(time.RFC3339Nano), nil
		}
		return "", fmt.Errorf("%s is not a date (want 2006-01-02 or an RFC 3339 timestamp)", short(value))
	case Boolean:
		switch {
		case strings.EqualFold(value, "true"):
			return "true", nil
		case strings.EqualFold(value, "false"):
			return "false", nil
		}
		return "", fmt.Errorf("%s is not a boolean (want true or false)", short(value))
	case MultipleChoice:
		for _, o := range f.Options {
			if value == o {
				return value, nil
			}
		}
		return "", fmt.Errorf("%s is not one of the options (%s)", short(value), strings.Join(f.Options, ", "))
	case Email:
		// A bare address only: ParseAddress also takes "Name <a@b>" and
		// comments, which would hand back a different string.
		a, err := mail.ParseAddress(value)
		if err != nil || a.Name != "" || a.Address != value {
			return "", fmt.Errorf("%s is not an email address", short(value))
		}
		return value, nil
	default: // a type added to Types but not here
		return "", fmt.Errorf("unknown field type %q", typ)
	}
}

// patterns caches the compiled Validation expressions; they come from the
// configuration, so the cache stays small.
var patterns sync.Map // string → *regexp.Regexp

// pattern compiles a Validation expression anchored to the whole value.
func pattern(expr string) (*regexp.Regexp, error) {
	if re, ok := patterns.Load(expr); ok {
		return re.(*regexp.Regexp), nil
	}
	// The bare expression first: "a)|(b" is not valid on its own, but
	// would be once wrapped.
	if _, err := regexp.Compile(expr); err != nil {
		return nil, fmt.Errorf("the field's validation pattern does not compile: %w", err)
	}
	re, err := regexp.Compile(`\A(?:` + expr + `)\z`)
	if err != nil {
		return nil, fmt.Errorf("the field's validation pattern does not compile: %w", err)
	}
	patterns.Store(expr, re)
	return re, nil
}

// short quotes a value for an error message, cut to a readable length.
func short(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		r := []rune(s)
		s = string(r[:37]) + "..."
	}
	return strconv.Quote(s)
}

package steps

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// urlTemplate is a URL that may embed ${{ }} in its path only. A value
// decides neither where a request goes (scheme, host, port) nor which
// parameters it carries (query, fragment): each value lands as one path
// segment's text, escaped with url.PathEscape, so "../admin" or
// "x?token=y" stay inside their segment.
type urlTemplate struct {
	t *workflow.Template
	// whole: the URL is one expression and nothing else (a notify webhook
	// sent to the request's own CallbackUrl); its value is a whole URL,
	// checked with callback.CheckURL when sent like any other.
	whole bool
}

// authorityEnd matches a URL's text up to the '/' that ends its authority.
var authorityEnd = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*/`)

// compileURL compiles the URL at node (field names it in errors).
// allowWhole admits a URL that is one expression and nothing else.
func compileURL(spec *workflow.Spec, node *yaml.Node, field string, allowWhole bool) (*urlTemplate, error) {
	t, err := spec.Template(node.Value, node)
	if err != nil {
		return nil, err
	}
	if t.IsLiteral() {
		if err := callback.CheckURL(t.Source, true); err != nil {
			return nil, spec.Errorf(node, "%s: %v", field, err)
		}
		return &urlTemplate{t: t}, nil
	}
	lits := t.Literals()
	if allowWhole && len(lits) == 2 && strings.TrimSpace(lits[0]) == "" && strings.TrimSpace(lits[1]) == "" {
		return &urlTemplate{t: t, whole: true}, nil
	}
	// Where does each value land? Look at the literal text before it
	// (earlier values are path-escaped, so they add no '/', '?' or '#').
	prefix := ""
	for _, lit := range lits[:len(lits)-1] {
		prefix += lit
		switch {
		case strings.ContainsAny(prefix, "?#"):
			return nil, spec.Errorf(node, "%s: ${{ }} in the query or fragment could add parameters (a value holding \"&token=…\"); give parameters in `query:`, which certflow URL-encodes", field)
		case !authorityEnd.MatchString(prefix):
			return nil, spec.Errorf(node, "%s: ${{ }} in the scheme, host or port would let a value choose where the request goes; write them literally, values may only fill path segments", field)
		}
		prefix += "x"
	}
	// The literal shape (values stood in for) must be a URL too.
	if err := callback.CheckURL(prefix+lits[len(lits)-1], true); err != nil {
		return nil, spec.Errorf(node, "%s: %v", field, err)
	}
	return &urlTemplate{t: t}, nil
}

// errDotSegment refuses a path value that a server would resolve as a
// step up or a no-op (RFC 3986 §5.2.4) rather than as a name.
var errDotSegment = errors.New(`"." and ".." are not names: a server would resolve them as path steps`)

// render evaluates the URL, escaping every value as path text.
func (u *urlTemplate) render(env *workflow.Env) (string, error) {
	if u.whole {
		return u.t.String(env)
	}
	out, err := u.t.Render(env, func(v string) (string, error) {
		if v == "" {
			return "", errEmptySegment
		}
		return url.PathEscape(v), nil
	})
	if err != nil {
		return "", err
	}
	// Values side by side ("${{ a }}${{ b }}" with "." and ".") make a
	// segment no single value is: check the path as assembled.
	parsed, err := url.Parse(out)
	if err != nil {
		return "", err
	}
	for _, seg := range strings.Split(parsed.EscapedPath(), "/") {
		if seg == "." || seg == ".." {
			return "", errDotSegment
		}
	}
	return out, nil
}

// errEmptySegment refuses an empty path value: it would leave "//",
// which servers resolve differently.
var errEmptySegment = errors.New("a value in the path may not be empty")

// appendQuery adds pairs (name, value, in order) to target's query,
// URL-encoded, after whatever the URL itself carries.
func appendQuery(target string, pairs [][2]string) (string, error) {
	if len(pairs) == 0 {
		return target, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("not a URL")
	}
	var b strings.Builder
	b.WriteString(u.RawQuery)
	for _, p := range pairs {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p[0]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p[1]))
	}
	u.RawQuery = b.String()
	return u.String(), nil
}

package keyfactor

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
)

// TestFailureDetailsFollowTheViewersRoles: approvers and administrators
// read why a request failed; its requester and a callback's receiver (no
// roles) read only that it failed.
func TestFailureDetailsFollowTheViewersRoles(t *testing.T) {
	r := &store.Request{ID: 7, Disposition: store.Failed, Message: "dial tcp 10.0.0.5:443: refused"}
	for _, tc := range []struct {
		viewer []string
		sees   bool
	}{
		{nil, false},
		{[]string{config.RoleRequester}, false},
		{[]string{config.RoleApprover}, true},
		{[]string{config.RoleRequester, config.RoleAdmin}, true},
	} {
		if got := SeesDetails(tc.viewer); got != tc.sees {
			t.Errorf("SeesDetails(%v) = %v", tc.viewer, got)
		}
		msg := DispositionMessage(r, tc.viewer)
		if tc.sees != (msg == r.Message) || (!tc.sees && (strings.Contains(msg, "10.0.0.5") || !strings.Contains(msg, "request 7 failed"))) {
			t.Errorf("DispositionMessage for %v: %q", tc.viewer, msg)
		}
	}
	r.Disposition = store.Denied
	if got := DispositionMessage(r, nil); got != r.Message {
		t.Errorf("a denial's reason is for everyone: %q", got)
	}
}

// TestRequestMetadataOverlaysAndClears: a certificate's metadata is the
// request's, under what the workflow and edits set, an empty value there
// clearing the field.
func TestRequestMetadataOverlaysAndClears(t *testing.T) {
	for _, tc := range []struct {
		name            string
		input, instance map[string]string
		want            string
	}{
		{"none", nil, nil, "map[]"},
		{"the request's", map[string]string{"Team": "web"}, nil, "map[Team:web]"},
		{"the workflow's over the request's", map[string]string{"Team": "web", "Env": "Test"}, map[string]string{"Team": "ops", "RequestedBy": "alice"}, "map[Env:Test RequestedBy:alice Team:ops]"},
		{"an empty value clears the request's", map[string]string{"Team": "web", "Env": "Test"}, map[string]string{"Team": ""}, "map[Env:Test]"},
		{"clearing every field leaves none", map[string]string{"Team": "web"}, map[string]string{"Team": "", "Gone": ""}, "map[]"},
	} {
		r := &store.Request{}
		r.Input.Metadata, r.Instance.Metadata = maps.Clone(tc.input), tc.instance
		md := RequestMetadata(r)
		if got := fmt.Sprint(md); got != tc.want || md == nil {
			t.Errorf("%s: %s, want %s (never nil)", tc.name, got, tc.want)
		}
		if !maps.Equal(tc.input, r.Input.Metadata) {
			t.Errorf("%s: the request's own metadata changed: %v", tc.name, r.Input.Metadata)
		}
	}
}

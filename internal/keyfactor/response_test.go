package keyfactor

import (
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

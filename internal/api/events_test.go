package api_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/api"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/secretfile"
)

const sourceSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestLoadEventSourcesRefusesWhatCouldPostCertflowsEvents: a source may
// name no reserved event, exactly or by prefix, nor a malformed name; its
// secret must parse, and a secret file must be private. Each error names
// the key.
func TestLoadEventSourcesRefusesWhatCouldPostCertflowsEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	open := filepath.Join(dir, "open")
	for path, mode := range map[string]os.FileMode{private: 0o600, open: 0o644} {
		if err := os.WriteFile(path, []byte(sourceSecret+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, mode)
	}
	good := map[string]config.EventSource{
		"a": {Secret: sourceSecret, Names: []string{"host.*", "deploy.finished", "request"}},
		"b": {SecretFile: private, Names: []string{"x"}},
	}
	if _, err := api.LoadEventSources(good); err != nil {
		t.Fatalf("good sources: %v", err)
	}
	tests := []struct {
		name string
		src  config.EventSource
		says string
	}{
		{"certificate.*", config.EventSource{Secret: sourceSecret, Names: []string{"certificate.*"}}, "events.sources.s.names[0]: \"certificate.*\" is certflow's own"},
		{"request.approved", config.EventSource{Secret: sourceSecret, Names: []string{"ok.x", "request.approved"}}, "events.sources.s.names[1]: \"request.approved\" is certflow's own"},
		{"schedule.*", config.EventSource{Secret: sourceSecret, Names: []string{"schedule.*"}}, "certflow's own"},
		{"certflow.x.*", config.EventSource{Secret: sourceSecret, Names: []string{"certflow.x.*"}}, "certflow's own"},
		{"a bare *", config.EventSource{Secret: sourceSecret, Names: []string{"*"}}, "events.sources.s.names[0]"},
		{"an upper-case name", config.EventSource{Secret: sourceSecret, Names: []string{"Host.Down"}}, "events.sources.s.names[0]"},
		{"a secret that is no secret", config.EventSource{Secret: "hunter2", Names: []string{"x"}}, "events.sources.s: webhook signing secret"},
		{"a secret file others may read", config.EventSource{SecretFile: open, Names: []string{"x"}}, "events.sources.s.secret_file: "},
		{"a missing secret file", config.EventSource{SecretFile: filepath.Join(dir, "none"), Names: []string{"x"}}, "events.sources.s.secret_file: "},
	}
	for _, tt := range tests {
		_, err := api.LoadEventSources(map[string]config.EventSource{"s": tt.src})
		if err == nil || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: got %v, want an error saying %q", tt.name, err, tt.says)
		}
		if tt.name == "a secret file others may read" && !errors.Is(err, secretfile.ErrInsecure) {
			t.Errorf("an open secret file: %v is not ErrInsecure", err)
		}
	}
}

package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEventsDefaults: admin and event-publisher may post events, only
// admin may read the log, no signed sources.
func TestEventsDefaults(t *testing.T) {
	t.Parallel()
	c := Default()
	if !slices.Equal(c.Events.PublisherRoles, []string{"event-publisher"}) || len(c.Events.ReaderRoles) != 0 || len(c.Events.Sources) != 0 {
		t.Fatalf("events defaults: %+v", c.Events)
	}
	if got := (EventSource{}).ToleranceOrDefault(); got != 5*time.Minute {
		t.Errorf("default tolerance %s", got)
	}
}

// TestValidateEventsNamesTheField: each bad events setting is one error
// that starts with its key.
func TestValidateEventsNamesTheField(t *testing.T) {
	t.Parallel()
	good := EventSource{Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Names: []string{"host.*"}}
	with := func(f func(*EventSource)) map[string]EventSource {
		s := good
		s.Names = slices.Clone(good.Names)
		f(&s)
		return map[string]EventSource{"cmdb": s}
	}
	tests := []struct {
		name   string
		change func(c *Config)
		field  string
	}{
		{"a publisher role that is no role name", func(c *Config) { c.Events.PublisherRoles = []string{"bad role"} }, "events.publisher_roles[0]"},
		{"a reader role spelt Admin", func(c *Config) { c.Events.ReaderRoles = []string{"ok", "Admin"} }, "events.reader_roles[1]"},
		{"an upper-case source name", func(c *Config) { c.Events.Sources = map[string]EventSource{"CMDB": good} }, "events.sources"},
		{"a source name with a slash", func(c *Config) { c.Events.Sources = map[string]EventSource{"a/b": good} }, "events.sources"},
		{"no secret", func(c *Config) { c.Events.Sources = with(func(s *EventSource) { s.Secret = "" }) }, "events.sources.cmdb"},
		{"both secrets", func(c *Config) { c.Events.Sources = with(func(s *EventSource) { s.SecretFile = "/x" }) }, "events.sources.cmdb"},
		{"no names", func(c *Config) { c.Events.Sources = with(func(s *EventSource) { s.Names = nil }) }, "events.sources.cmdb.names"},
		{"an empty name", func(c *Config) { c.Events.Sources = with(func(s *EventSource) { s.Names = append(s.Names, " ") }) }, "events.sources.cmdb.names[1]"},
		{"a negative tolerance", func(c *Config) { c.Events.Sources = with(func(s *EventSource) { s.Tolerance = -time.Second }) }, "events.sources.cmdb.tolerance"},
		{"a tolerance over an hour", func(c *Config) { c.Events.Sources = with(func(s *EventSource) { s.Tolerance = 2 * time.Hour }) }, "events.sources.cmdb.tolerance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			errs := joined(err)
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.field) {
				t.Fatalf("want one error starting with %s, got %v", tt.field, err)
			}
		})
	}
	c := Default()
	c.Events.Sources = with(func(s *EventSource) { s.Tolerance = time.Minute })
	c.Events.ReaderRoles = []string{"auditor"}
	if err := c.Validate(); err != nil {
		t.Errorf("a good source: %v", err)
	}
}

// TestLoadEventsSection: the events section as docs/events.md writes it
// loads; an unknown key inside a source is named.
func TestLoadEventsSection(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, `events:
  retention: 240h
  reader_roles: [auditor]
  sources:
    cmdb:
      secret_file: /etc/certflow/cmdb-webhook-secret
      names: [host.*]
      tolerance: 2m
`))
	if err != nil {
		t.Fatal(err)
	}
	src := c.Events.Sources["cmdb"]
	if c.Events.Retention != 240*time.Hour || !slices.Equal(c.Events.ReaderRoles, []string{"auditor"}) ||
		!slices.Equal(c.Events.PublisherRoles, []string{"event-publisher"}) ||
		src.SecretFile != "/etc/certflow/cmdb-webhook-secret" || !slices.Equal(src.Names, []string{"host.*"}) || src.Tolerance != 2*time.Minute {
		t.Fatalf("loaded %+v", c.Events)
	}
	_, err = Load(writeConfig(t, "events:\n  sources:\n    cmdb:\n      secret: whsec_x\n      name: [a]\n"))
	if err == nil || !strings.Contains(err.Error(), `events.sources["cmdb"]: unknown key "name" (did you mean "names"?)`) {
		t.Errorf("an unknown key in a source: %v", err)
	}
}

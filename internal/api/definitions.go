package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/dryrun"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/workflow"
)

func describeDefinitions(set *workflow.Set) []keyfactor.Definition {
	defs := set.All()
	out := make([]keyfactor.Definition, 0, len(defs))
	for _, d := range defs {
		def := keyfactor.Definition{
			Id: d.Name, DisplayName: d.Name, Description: strings.TrimSpace(d.Description), WorkflowType: d.Trigger,
			Version: d.Version, Priority: d.Priority, File: d.File, Steps: make([]keyfactor.DefinitionStep, 0, len(d.Steps)),
			Visible: append([]string{}, d.Visible.Entries...),
		}
		if d.Match != nil {
			def.Match = d.Match.Source
		}
		for _, s := range d.Steps {
			st := keyfactor.DefinitionStep{UniqueName: s.ID, ExtensionName: s.Uses, Attempts: s.Retry.Attempts,
				Backoff: s.Retry.Backoff.String(), OnError: string(s.OnError)}
			if s.If != nil {
				st.Condition = s.If.Source
			}
			if s.Timeout > 0 {
				st.Timeout = s.Timeout.String()
			}
			def.Steps = append(def.Steps, st)
		}
		out = append(out, def)
	}
	return out
}

// handleListDefinitions is GET /Workflow/Definitions.
func (s *Server) handleListDefinitions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, describeDefinitions(s.defs.Load()))
}

// handleReloadDefinitions is POST /Workflow/Definitions/Reload: reload
// here and in every other process; a set that does not lint changes
// nothing and is answered 400 with every problem.
func (s *Server) handleReloadDefinitions(w http.ResponseWriter, r *http.Request) {
	if err := s.reload(r.Context()); err != nil {
		var le *workflow.LoadError
		if errors.As(err, &le) || strings.Contains(err.Error(), "do not lint") {
			writeError(w, r, s.log, newError(http.StatusBadRequest, keyfactor.CodeInvalidDefinition, "%v", err))
			return
		}
		writeError(w, r, s.log, err)
		return
	}
	s.log.Info("workflow definitions reloaded", "by", identity(r).Name)
	writeJSON(w, http.StatusOK, describeDefinitions(s.defs.Load()))
}

// dryRunTimeout bounds one dry run (POST /Workflow/Definitions/Test).
const dryRunTimeout = 10 * time.Second

// handleTestDefinitions is POST /Workflow/Definitions/Test: one test case
// (docs/testing-definitions.md) run against the loaded definitions, built
// again with the dry run's step types: nothing is issued, sent or stored.
func (s *Server) handleTestDefinitions(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, r, s.log, err) // *http.MaxBytesError → 413
		return
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		writeError(w, r, s.log, badField("request body", "want a JSON object: a test case"))
		return
	}
	c, err := dryrun.ParseCase(data)
	if err != nil {
		writeError(w, r, s.log, newError(http.StatusBadRequest, keyfactor.CodeInvalidField, "%v", err))
		return
	}
	h, err := dryrun.New(dryrun.Options{Config: s.cfg, CASubjects: s.caSubjects})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	set, err := h.Rebuild(s.defs.Load())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dryRunTimeout)
	defer cancel()
	rep := h.Run(ctx, set, c)
	ans := dryrun.TestAnswer{TestReport: *rep}
	if c.Expect != nil {
		ans.Failures = c.Check(rep)
		passed := len(ans.Failures) == 0
		ans.Passed = &passed
	}
	s.log.Info("workflow definitions dry-run", "by", identity(r).Name, "trigger", rep.Trigger, "runs", len(rep.Runs))
	writeJSON(w, http.StatusOK, ans)
}

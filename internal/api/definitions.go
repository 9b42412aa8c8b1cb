package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

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

// input is e's request as the workflow will see it: the CSR described,
// the SANs merged and normalised (RFC 2818's CN added where the template
// enforces it).
func (s *Server) input(e *enrollment) *workflow.Input {
	addCN := false
	if t, ok := s.cfg.Template(e.req.Input.Template); ok {
		addCN = t.RFCEnforcement
	}
	return workflow.NewInput(e.req.Trigger, e.req.Input, e.csr, e.req.Requester, addCN)
}

// selectDefinition checks, before anything is stored, that a workflow will
// take the request. The worker selects again when it runs (definitions may
// be reloaded in between) and fails the request then if none matches.
func (s *Server) selectDefinition(e *enrollment) error {
	return s.selectFor(e, s.input(e))
}

// selectFor is selectDefinition with e's input at hand.
func (s *Server) selectFor(e *enrollment, in *workflow.Input) error {
	_, err := s.defs.Load().Select(e.req.Trigger, in.Env(&workflow.Instance{}, time.Now()))
	switch {
	case errors.Is(err, workflow.ErrNoDefinition):
		return newError(http.StatusBadRequest, keyfactor.CodeNoWorkflow, "no %s workflow definition matches this request (template %q)", e.req.Trigger, e.req.Input.Template)
	case err != nil:
		return newError(http.StatusBadRequest, keyfactor.CodeNoWorkflow, "selecting the workflow: %v", err)
	}
	return nil
}

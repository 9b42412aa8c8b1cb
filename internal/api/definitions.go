package api

import (
	"errors"
	"net/http"
	"strings"

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

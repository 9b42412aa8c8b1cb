package enroll

import (
	"errors"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/workflow"
)

// input is e's request as the workflow will see it: the CSR described,
// the SANs merged and normalised (RFC 2818's CN added where the template
// enforces it).
func (s *Service) input(e *enrollment) *workflow.Input {
	addCN := false
	if t, ok := s.cfg.Template(e.req.Input.Template); ok {
		addCN = t.RFCEnforcement
	}
	return workflow.NewInput(e.req.Trigger, e.req.Input, e.csr, e.req.Requester, addCN)
}

// selectDefinition checks, before anything is stored, that a workflow will
// take the request. The worker selects again when it runs (definitions may
// be reloaded in between) and fails the request then if none matches.
func (s *Service) selectDefinition(e *enrollment) error {
	return s.selectFor(e, s.input(e))
}

// selectFor is selectDefinition with e's input at hand.
func (s *Service) selectFor(e *enrollment, in *workflow.Input) error {
	_, err := s.defs.Load().Select(e.req.Trigger, in.Env(&workflow.Instance{}, time.Now()))
	switch {
	case errors.Is(err, workflow.ErrNoDefinition):
		return newError(Invalid, keyfactor.CodeNoWorkflow, "no %s workflow definition matches this request (template %q)", e.req.Trigger, e.req.Input.Template)
	case err != nil:
		return newError(Invalid, keyfactor.CodeNoWorkflow, "selecting the workflow: %v", err)
	}
	return nil
}

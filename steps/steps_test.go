package steps_test

import (
	"slices"
	"testing"

	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// The catalogue has a builder under each step-name constant, and under no
// other name: a constant without a type, or a type under a literal name,
// shows here.
func TestCatalogHoldsEveryStepTypeUnderItsConstant(t *testing.T) {
	t.Parallel()
	want := []string{
		workflow.ValidateStep, workflow.IssueStep, workflow.RevokeStep, workflow.MetadataStep,
		workflow.NotifyStep, workflow.SetStep, workflow.HTTPStep, workflow.ApprovalStep,
		workflow.RenewStep, workflow.EnrollStep,
	}
	var got []string
	for name, build := range steps.ForLint(defaultConfig()).Catalog() {
		if build == nil {
			t.Errorf("%s: no builder", name)
		}
		got = append(got, name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("catalogue names %q, want %q", got, want)
	}
}

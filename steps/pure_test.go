package steps_test

import (
	"testing"

	"github.com/certflow/certflow/workflow"
)

// Only step types with no effect outside their result declare themselves
// pure: the engine skips their checkpoints (workflow.Pure). A notify that
// only logs is one: its line waits for the next checkpoint
// (Result.AfterSave); one that calls a webhook is not.
func TestOnlyEffectFreeStepTypesArePure(t *testing.T) {
	t.Parallel()
	def, err := parse(defaultConfig(),
		`name: t`, `trigger: enrollment`, `steps:`,
		`  - {id: policy, uses: validate}`,
		`  - {id: vars, uses: set, with: {tier: gold}}`,
		`  - {id: tag, uses: metadata, with: {set: {Owner: alice}}}`,
		`  - {id: call, uses: http, with: {url: "https://cmdb.example.com/x"}}`,
		`  - {id: tell, uses: notify, with: {log: hello}}`,
		`  - {id: hook, uses: notify, with: {log: hello, webhook: "https://hooks.example.com/pki"}}`,
		`  - {id: issue, uses: issue}`,
	)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"policy": true, "vars": true, "tag": true, "call": false, "tell": true, "hook": false, "issue": false}
	for _, s := range def.Steps {
		if got := workflow.IsPure(s.Step); got != want[s.ID] {
			t.Errorf("step %s (%s): pure = %v, want %v", s.ID, s.Uses, got, want[s.ID])
		}
	}
}

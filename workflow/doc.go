// Package workflow is certflow's workflow engine: it loads YAML
// definitions, picks the one a request runs, and runs its steps with
// checkpoints, suspending for people's decisions. It knows no Redis,
// asynq or HTTP: the caller (certflow's worker, internal/worker) stores
// what the engine hands it, and the step types live elsewhere (package
// steps). Start with the examples; this page says what holds them
// together.
//
// # Definitions
//
// A definition is one YAML file: a name, a trigger (enrollment, renewal,
// revocation, event:<name>, event:<prefix>.* or schedule with a
// schedule: cron expression; see event.go), an optional match expression and a
// priority, an optional visible: list, and its steps. Each step has an
// id, the step type it uses:, and optionally if: (a condition), with:
// (the type's settings), timeout:, retry: and on_error:.
//
//	name: web-servers
//	trigger: enrollment
//	match: request.Template == "WebServer"
//	priority: 10
//	steps:
//	  - id: policy
//	    uses: validate
//	  - id: issue
//	    uses: issue
//	  - id: tell
//	    uses: notify
//	    if: certificate.NotAfter > now
//	    with: {log: "issued ${{ certificate.SerialNumber }}"}
//
// Parse compiles one file; Load and LoadFiles compile a folder into a
// Set. Everything is checked at load: unknown keys, step ids, every
// expression (against Env, so a misspelt field is an error), each step's
// with: (by its Builder), reads of steps that run later. Problems come
// back together, each a *LoadError at file:line:column naming its step.
// An enrollment, renewal or revocation definition has exactly one CA step
// (CAStep: issue or revoke); one that leaves it out gets it appended.
//
// # Step types
//
// A step's uses: name is looked up in the Catalog given to Parse or Load:
// a map from name to Builder. The Builder gets the step's Spec, compiles
// its with: (Spec.DecodeWith, Spec.Template, Spec.Bool) and returns the
// Step the engine runs. The names are the *Step constants (ValidateStep,
// IssueStep, …), a contract with definitions in the field. certflow's
// catalogue is built by package steps (steps.Types, one type per step,
// each holding the services it uses); this package never imports it, and
// tests give it toy catalogues.
//
// # Expressions
//
// match:, if: and a validate rule's check: are bare boolean expressions
// (CompileBool); other strings may embed ${{ expr }} (CompileTemplate).
// They are expr-lang expressions over Env: request, csr, sans, requester,
// steps.<id>.<output>, vars, certificate, now. Env's field names are
// what definitions spell: renaming one breaks definitions.
//
// # Selection and versions
//
// For an event, Set.ForEvent names every definition it triggers (fan-out:
// the caller evaluates each match and runs each that holds).
// Set.Select picks, for a request trigger, the definition of highest priority
// whose match holds (two that tie on trigger and priority are refused at
// load, so the choice never depends on file order). A definition's
// Version is its content hash; Engine.Start pins a new Instance to
// name and version, and the instance finishes on that version whatever
// is reloaded meanwhile (the caller keeps old versions' sources: Set.Get,
// Parse).
//
// # An instance's life
//
// An Instance is one run of a definition for one request: its Status,
// the index of the Next step, the History of step outcomes, the steps'
// Outputs, Vars, Metadata, the Certificate, and while suspended its Wait.
// The statuses move only as Instance.To allows (ErrTransition otherwise):
//
//	"" → Running                 Engine.Start
//	Running → Suspended          a step returned Result.Suspend
//	Suspended → Running          the wait was approved; the next Run resumes
//	Running → Complete           after the last step
//	Running, Suspended → Rejected  a denial (Deny, a denied or timed-out wait, on_error: deny)
//	Running, Suspended → Failed    a failure (Permanent, spent retries, Engine.Fail)
//	Failed → Running             an administrator's Instance.Restart
//
// Engine.Run runs steps from Next until the instance rests (Suspended or
// terminal). A step's error decides what follows: nil goes on; Deny
// rejects; RetryLater, or the context ending, makes Run return an error
// so that the queue runs the request again from this step (the attempt
// does not count); any other error is tried again per the step's retry:
// (a Permanent one is not) and then handled by its on_error: (fail, deny
// or continue).
//
// # What the engine guarantees
//
// Checkpoints. Run calls the caller's Checkpoint after each step with
// effects, before the next starts, and after the last: a crash resumes at
// the step after the last one checkpointed. Delivery is at least once, so
// a step may run again after a crash; its effects must be idempotent or
// harmless to repeat.
//
// Pure steps share the next checkpoint. A step type that implements Pure
// (it reads, and acts on nothing) and a skipped step get no checkpoint of
// their own: their result rides on the next one, and a crash runs them
// again. A step's Result.Record (the issue step's certificate) also rides
// on the next checkpoint, which the caller writes atomically with the
// instance (Instance.Unsaved), and a Result.AfterSave (a log line) runs
// once that checkpoint is written. Before any step with effects starts,
// such pending results are checkpointed first: nothing acts on an effect
// that is not recorded.
//
// Approvals. A step that returns Result.Suspend parks the instance
// (Suspended, with the Wait checkpointed) and Run returns: no worker is
// held. Decisions are recorded on the instance outside the engine
// (Instance.Decide, TimeOut, Stop), by whoever holds the request; once the
// wait has a Verdict, the next Run lets the step tell its channels
// (Resumer) and goes on, or rejects. An escalation is told through
// Escalator.
//
// The issue claim. The caller may hand Run an IssueClaim (the worker's
// issue lock, taken with its read of the request) in Input.IssueClaim:
// steps see it as Run.IssueClaim, and the engine gives it up before any
// step with effects other than the issue step.
//
// # Visibility
//
// What of an instance its requester may see is the definition's to say:
// step ids, states and decisions always; of vars and step outputs only
// what the top-level visible: list names (Visibility). Approvers and
// administrators see everything. The metadata names a definition's steps
// set (MetadataSetter), with ReservedMetadata, are the workflow's record:
// a requester may not supply them (Set.MetadataNames).
//
// # Where next
//
//   - the step types: package steps, one file each, and README's step table
//   - the shipped definitions: definitions/, and definitions/examples
//   - how certflow runs the engine: internal/worker (Worker.Run), and
//     "The path of a run" in docs/architecture.md
//   - why pure steps, issue once and approvals work as they do:
//     docs/design-notes.md; what requesters see: docs/visibility.md
package workflow

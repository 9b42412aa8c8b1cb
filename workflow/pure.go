package workflow

// Pure is implemented by a step type whose Run has no effect outside the
// result it returns: it reads the environment and configuration, and
// calls nothing, stores nothing, sends nothing. Running it again gives the
// same result or, if it reads the time, a result as valid. A step that
// only reports (a log line) is pure too when it hands its report back as
// Result.AfterSave, which the engine runs once the checkpoint carrying the
// step is written.
//
// The engine does not checkpoint after a pure step (nor after a skipped
// step, which ran nothing): its result is persisted with the next
// checkpoint, and a crash before that re-runs it, which is harmless. So a
// side-effecting step's result is still persisted before the next step
// starts, a re-delivered task resumes after the last persisted step, and
// no finished side-effecting step runs twice. The last step of a
// definition is checkpointed whatever it is, with the final status.
type Pure interface {
	Step
	// Pure reports whether this step (as configured) is pure.
	Pure() bool
}

// IsPure reports whether s declares itself pure.
func IsPure(s Step) bool {
	p, ok := s.(Pure)
	return ok && p.Pure()
}

// Package workflow is certflow's engine: it loads YAML definitions
// (Parse, Load), compiles their expressions against a typed environment,
// selects the definition a request runs (Set.Select) and runs its steps in
// order, checkpointing an Instance after each (Engine), suspending for
// people's decisions (Wait, Decision) and resuming.
//
// What of an instance its requester may see is the definition's to say:
// step ids, states and decisions always; of vars and step outputs only
// what the top-level `visible:` list names (Visibility). Approvers and
// administrators see everything. The metadata names a definition's steps
// set (MetadataSetter), with ReservedMetadata, are the workflow's record:
// a requester may not supply them (Set.MetadataNames).
package workflow

package keyfactor

import (
	"time"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// Instance is Keyfactor's workflow instance, field for field, with
// certflow's decision record and wait beside it.
type Instance struct {
	Id                     string             `json:"Id"`
	Status                 string             `json:"Status"`
	CurrentStepId          string             `json:"CurrentStepId"`
	CurrentStepDisplayName string             `json:"CurrentStepDisplayName"`
	CurrentStepUniqueName  string             `json:"CurrentStepUniqueName"`
	StatusMessage          string             `json:"StatusMessage"`
	Signals                []Signal           `json:"Signals"`
	Definition             InstanceDefinition `json:"Definition"`
	Title                  string             `json:"Title"`
	LastModified           time.Time          `json:"LastModified"`
	StartDate              time.Time          `json:"StartDate"`
	InitialData            map[string]any     `json:"InitialData"`
	CurrentStateData       map[string]any     `json:"CurrentStateData"`
	ReferenceId            int64              `json:"ReferenceId"`
	// certflow's: the request's disposition, what the instance waits for,
	// and every decision taken on it.
	RequestDisposition string              `json:"RequestDisposition"`
	InitiatingUser     string              `json:"InitiatingUser"`
	Wait               *workflow.Wait      `json:"Wait,omitempty"`
	Decisions          []workflow.Decision `json:"Decisions"`
}

// Signal is one signal an instance's steps take.
type Signal struct {
	SignalName     string `json:"SignalName"`
	StepSignalId   string `json:"StepSignalId"`
	SignalReceived bool   `json:"SignalReceived"`
}

// InstanceDefinition names the definition version an instance is pinned to.
type InstanceDefinition struct {
	DefinitionId string `json:"DefinitionId"`
	DisplayName  string `json:"DisplayName"`
	Version      string `json:"Version"`
	WorkflowType string `json:"WorkflowType"`
}

// SignalRequest is the body of POST /Workflow/Instances/{id}/Signals.
type SignalRequest struct {
	SignalKey string         `json:"SignalKey"`
	Data      map[string]any `json:"Data"`
}

// StopRequest is the optional body of POST /Workflow/Instances/{id}/Stop.
type StopRequest struct {
	Comment string `json:"Comment"`
}

// CertificateRequest is Keyfactor's row of its older approval queue
// (GET /Workflow/Certificates/Pending and /Denied).
type CertificateRequest struct {
	Id                   int64             `json:"Id"`
	CARequestId          string            `json:"CARequestId"`
	CommonName           string            `json:"CommonName"`
	DistinguishedName    string            `json:"DistinguishedName"`
	SubmissionDate       time.Time         `json:"SubmissionDate"`
	CertificateAuthority string            `json:"CertificateAuthority"`
	Template             string            `json:"Template"`
	Requester            string            `json:"Requester"`
	State                int               `json:"State"`
	StateString          string            `json:"StateString"`
	Metadata             map[string]string `json:"Metadata"`
}

// ProcessedCertificateRequest is one entry of an ApproveDenyResult.
type ProcessedCertificateRequest struct {
	CARequestId        string `json:"CARequestId"`
	CAHost             string `json:"CAHost"`
	CALogicalName      string `json:"CALogicalName"`
	KeyfactorRequestId int64  `json:"KeyfactorRequestId"`
	Comment            string `json:"Comment"`
}

// ApproveDenyResult answers POST /Workflow/Certificates/Approve and /Deny:
// Successes are the approvals recorded, Denials the denials recorded,
// Failures the ids whose decision was refused, each with the reason.
type ApproveDenyResult struct {
	Successes []ProcessedCertificateRequest `json:"Successes"`
	Failures  []ProcessedCertificateRequest `json:"Failures"`
	Denials   []ProcessedCertificateRequest `json:"Denials"`
}

// DenialRequest is the body of POST /Workflow/Certificates/Deny.
type DenialRequest struct {
	Comment               string  `json:"Comment"`
	CertificateRequestIds []int64 `json:"CertificateRequestIds"`
}

// Definition is GET /Workflow/Definitions' description of one loaded
// definition: Keyfactor's field names where it has them (Id, DisplayName,
// WorkflowType, Steps[].UniqueName/ExtensionName), certflow's beside them.
type Definition struct {
	Id           string           `json:"Id"`
	DisplayName  string           `json:"DisplayName"`
	Description  string           `json:"Description"`
	WorkflowType string           `json:"WorkflowType"`
	Version      string           `json:"Version"`
	Priority     int              `json:"Priority"`
	Match        string           `json:"Match,omitempty"`
	File         string           `json:"File"`
	Steps        []DefinitionStep `json:"Steps"`
	// Visible lists the vars and step outputs the definition shows
	// requesters (its visible:); approvers see everything.
	Visible []string `json:"Visible"`
}

// DefinitionStep is one step of a Definition.
type DefinitionStep struct {
	UniqueName    string `json:"UniqueName"`
	ExtensionName string `json:"ExtensionName"`
	Condition     string `json:"Condition,omitempty"`
	Attempts      int    `json:"Attempts"`
	Backoff       string `json:"Backoff"`
	Timeout       string `json:"Timeout,omitempty"`
	OnError       string `json:"OnError"`
}

// InstanceStatus is the instance's status in Keyfactor's names; a request
// still queued counts as running.
func InstanceStatus(r *store.Request) string {
	if r.Instance.Status == "" {
		return string(workflow.StatusRunning)
	}
	return string(r.Instance.Status)
}

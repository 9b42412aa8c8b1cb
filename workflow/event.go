package workflow

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Event is something that happened, as the event log keeps it and as an
// event-triggered definition's expressions see it (`event`): a lifecycle
// change certflow made (request.pending, certificate.issued, …), a
// certificate nearing expiry (the expiry watch), a schedule's slot, or an
// event another system posted (POST /Events).
type Event struct {
	// ID is the event log's id for it (a Redis stream id, time-ordered).
	ID   string    `json:"Id"`
	Name string    `json:"Name"`
	Time time.Time `json:"Time"`
	// CertificateID and RequestID name what the event concerns (0: none).
	CertificateID int64 `json:"CertificateId,omitempty"`
	RequestID     int64 `json:"RequestId,omitempty"`
	// Data is the event's own fields: for lifecycle events certflow's
	// (see docs/events.md), for an external one what its sender posted.
	Data map[string]any `json:"Data,omitempty"`
	// Source is who emitted it: "certflow", or the user or webhook
	// source that posted it.
	Source string `json:"Source,omitempty"`
	// ExternalID is the Id an external sender gave (a repeat is refused).
	ExternalID string `json:"ExternalId,omitempty"`
	// Depth counts the event-triggered runs that led to it: 0 for an
	// event no automation caused; an event from a request a run made
	// (a renewal, a revocation) is one deeper than the run's event. The
	// dispatcher starts no runs past MaxEventDepth, so definitions that
	// trigger one another cannot loop for ever.
	Depth int `json:"Depth,omitempty"`
}

// MaxEventDepth is the deepest event that still starts runs.
const MaxEventDepth = 4

// Lifecycle events: certflow emits these, atomically with the change
// that makes them true; nobody else may post them.
const (
	EventRequestPending      = "request.pending"
	EventRequestApproved     = "request.approved"
	EventRequestDenied       = "request.denied"
	EventRequestFailed       = "request.failed"
	EventCertificateIssued   = "certificate.issued"
	EventCertificateRenewed  = "certificate.renewed"
	EventCertificateRevoked  = "certificate.revoked"
	EventCertificateExpiring = "certificate.expiring"
	EventCertificateExpired  = "certificate.expired"
	EventApprovalEscalated   = "approval.escalated"
	EventCallbackFailed      = "callback.failed"
	// EventSchedule is a schedule's slot: Data.Definition names the one
	// definition it starts, Data.Slot the slot's time.
	EventSchedule = "schedule.fired"
)

// reservedEventPrefixes are the namespaces of certflow's own events.
var reservedEventPrefixes = []string{"request.", "certificate.", "approval.", "callback.", "schedule.", "certflow."}

// ReservedEvent reports whether name is in a namespace only certflow
// emits into: an external sender posting certificate.expiring could make
// definitions renew or revoke certificates at will.
func ReservedEvent(name string) bool {
	return slices.ContainsFunc(reservedEventPrefixes, func(p string) bool { return strings.HasPrefix(name, p) })
}

// maxEventName bounds an event's name.
const maxEventName = 100

var eventNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$`)

// CheckEventName reports what is wrong with an event name, or nil: lower
// case words of letters, digits, - and _, joined by dots, at most 100
// characters.
func CheckEventName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("an event name is required")
	case len(name) > maxEventName:
		return fmt.Errorf("event name is longer than %d characters", maxEventName)
	case !eventNameRE.MatchString(name):
		return fmt.Errorf("event name %q: want lower-case words of letters, digits, - and _ joined by dots (e.g. host.decommissioned)", name)
	}
	return nil
}

// Event triggers: "event:<name>" runs on that event, "event:<prefix>.*"
// on every event under the prefix; "schedule" on its definition's cron
// slots.
const (
	eventTriggerPrefix = "event:"
	TriggerSchedule    = "schedule"
)

// EventTrigger reports whether trigger is an event or schedule trigger:
// one whose every matching definition runs (fan-out), unlike the
// request triggers, where one definition is selected.
func EventTrigger(trigger string) bool {
	return trigger == TriggerSchedule || strings.HasPrefix(trigger, eventTriggerPrefix)
}

// checkEventTrigger reports what is wrong with an event: trigger.
func checkEventTrigger(trigger string) error {
	pattern := strings.TrimPrefix(trigger, eventTriggerPrefix)
	if p, ok := strings.CutSuffix(pattern, ".*"); ok {
		pattern = p
	}
	if err := CheckEventName(pattern); err != nil {
		return fmt.Errorf("trigger %q: %v", trigger, err)
	}
	return nil
}

// TriggerMatches reports whether an event named name starts definitions
// whose trigger is trigger: "event:<name>" exactly, or "event:<p>.*" for
// every name under p. (A schedule's slots are matched by definition
// name, see Set.ForEvent.)
func TriggerMatches(trigger, name string) bool {
	pattern, ok := strings.CutPrefix(trigger, eventTriggerPrefix)
	if !ok {
		return false
	}
	if p, ok := strings.CutSuffix(pattern, ".*"); ok {
		return strings.HasPrefix(name, p+".")
	}
	return pattern == name
}

// cronParser reads a schedule: five fields (minute hour day-of-month
// month day-of-week), a descriptor (@hourly, @daily, @every 15m), and
// an optional CRON_TZ=<zone> prefix; UTC otherwise.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// minSchedulePeriod is the shortest time between two slots allowed.
const minSchedulePeriod = time.Minute

// ParseSchedule compiles a cron expression.
func ParseSchedule(spec string) (cron.Schedule, error) {
	sched, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %v", spec, err)
	}
	// Two consecutive slots from an arbitrary instant show the period of
	// the common schedules (@every, */N); finer ones are refused.
	t0 := sched.Next(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	if t1 := sched.Next(t0); !t1.IsZero() && t1.Sub(t0) < minSchedulePeriod {
		return nil, fmt.Errorf("schedule %q: slots %s apart; the shortest period is %s", spec, t1.Sub(t0), minSchedulePeriod)
	}
	return sched, nil
}

// Slot returns the latest slot of sched at or before now (zero if none
// in the year before now): the slot a scheduler fires at now.
func Slot(sched cron.Schedule, now time.Time) time.Time {
	// Walk forward from a day back (at most 1440 slots: the period is a
	// minute at least); only a schedule with no slot in that day walks
	// the year, and it has few.
	for _, back := range []time.Duration{24 * time.Hour, 366 * 24 * time.Hour} {
		var last time.Time
		for t := sched.Next(now.Add(-back)); !t.IsZero() && !t.After(now); t = sched.Next(t) {
			last = t
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}

// Package queue is certflow's asynq wiring: task types and payloads, enqueue
// helpers that give every task a deterministic id (so duplicates collapse),
// and the worker server with its retry policy. Two speed shortcuts live
// here: the piggyback (piggyback.go), which sends a new request's record
// in the same round trip as its task's enqueue and checks at start that it
// still recognises asynq's enqueue, and the warm goroutines (warm.go) that
// keep a grown stack for the next task. asynq's key layout is spelled once,
// in keys.go.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/redisbatch"
)

// Task type names are a contract with tasks already in Redis: never rename.
const (
	// TypeRun runs (or resumes) the workflow of a request.
	TypeRun = "enrollment:run"
	// TypeCallback delivers a settled request to its CallbackUrl.
	TypeCallback = "callback:deliver"
	// TypeResume resumes a request whose approval was decided.
	TypeResume = "workflow:resume"
	// TypeApprovalTimeout fires an approval step's timeout.
	TypeApprovalTimeout = "approval:timeout"
)

// Payload is every certflow task's payload.
type Payload struct {
	RequestID int64 `json:"request_id"`
	// Generation is the request's run generation the task was made for;
	// a task of an older generation is stale and does nothing.
	Generation int64 `json:"generation,omitempty"`
	// Step and Stage name the approval wait a timeout is for.
	Step  string `json:"step,omitempty"`
	Stage int    `json:"stage,omitempty"`
}

// Client enqueues certflow's tasks.
type Client struct {
	c   *asynq.Client
	rdb *redis.Client
	// hook sends a new request's writes with its task's enqueue
	// (EnqueueRunAfter); nil with the piggyback off.
	hook *piggyback
	// mode is how EnqueueRunAfter sends the writes: unprobed, riding or
	// writesFirst.
	mode atomic.Int32
	// probing is held by the one Probe under way.
	probing sync.Mutex
	// batch groups the writes-first pipelines with others' (nil: group
	// commit off).
	batch *redisbatch.Batcher
	// enqueueTask is asynq's enqueue (tests put another in its place, one
	// the hook does not recognise).
	enqueueTask func(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error)
	log         *slog.Logger
	queue       string
	retry       int
	timeout     time.Duration
	cbRetry     int
}

// Options are a Client's speed switches (config.Speed) and its log.
type Options struct {
	// Piggyback sends a new request's record with its task's enqueue
	// (EnqueueRunAfter), once Probe found that it recognises asynq's
	// enqueue. Off: the record is written first, then the task enqueued.
	Piggyback bool
	// GroupCommit sends the record-with-task pipelines together with
	// other submits' (redisbatch). Off: each is its own round trip.
	GroupCommit bool
	// Log gets the piggyback's fallbacks (nil: slog's default).
	Log *slog.Logger
}

// NewClient enqueues on queue through rdb, one Redis (a *redis.Client, a
// Sentinel failover client included; never Cluster or Ring: the
// piggyback counts on a pipeline's commands running in order), shared
// with the store. With opts.Piggyback it adds the hook to rdb that lets
// EnqueueRunAfter send a request's record with its task; call Probe at
// start (EnqueueRunAfter probes itself if nobody has).
func NewClient(rdb *redis.Client, queue string, maxRetry int, timeout time.Duration, callbackRetries int, opts Options) *Client {
	c := &Client{c: asynq.NewClientFromRedisClient(rdb), rdb: rdb, log: opts.Log, queue: queue, retry: maxRetry, timeout: timeout, cbRetry: callbackRetries}
	c.enqueueTask = c.c.EnqueueContext
	if c.log == nil {
		c.log = slog.Default()
	}
	if opts.GroupCommit {
		c.batch = redisbatch.New(rdb)
	}
	if opts.Piggyback {
		c.hook = newPiggyback(rdb, c.batch)
		rdb.AddHook(c.hook)
		c.mode.Store(unprobed)
	} else {
		c.mode.Store(writesFirst)
	}
	return c
}

// EnqueueRun queues the workflow run of a request at a generation. The
// task id is derived from both, so enqueueing twice yields one task; the
// reconciler moves a stuck request to a new generation, whose task is new
// whatever asynq still holds of the old one (archived, orphaned active).
func (c *Client) EnqueueRun(ctx context.Context, requestID, generation int64) error {
	return c.enqueueRun(ctx, runTaskID(requestID, generation), requestID, generation)
}

func runTaskID(requestID, generation int64) string {
	return "run:" + strconv.FormatInt(requestID, 10) + ":" + strconv.FormatInt(generation, 10)
}

func (c *Client) enqueueRun(ctx context.Context, id string, requestID, generation int64) error {
	return c.enqueue(ctx, TypeRun, id, Payload{RequestID: requestID, Generation: generation},
		asynq.MaxRetry(c.retry), asynq.Timeout(c.timeout))
}

// EnqueueCallback queues the delivery of a request's result; one delivery
// task per request and disposition.
func (c *Client) EnqueueCallback(ctx context.Context, requestID int64, disposition string) error {
	return c.enqueue(ctx, TypeCallback, "callback:"+strconv.FormatInt(requestID, 10)+":"+disposition, Payload{RequestID: requestID},
		asynq.MaxRetry(c.cbRetry), asynq.Timeout(time.Minute),
		// Kept after success so that a re-delivered run task cannot
		// enqueue (and deliver) the same callback again.
		asynq.Retention(24*time.Hour))
}

// EnqueueResume queues the run that applies a decided approval. Its id is
// derived from the instance and the decided wait (step, stage) at the
// request's generation: however many deciders race, one task results.
func (c *Client) EnqueueResume(ctx context.Context, requestID int64, instanceID, step string, stage int, generation int64) error {
	id := "resume:" + waitID(instanceID, step, stage, generation)
	return c.enqueue(ctx, TypeResume, id, Payload{RequestID: requestID, Generation: generation},
		asynq.MaxRetry(c.retry), asynq.Timeout(c.timeout))
}

// EnqueueTimeout schedules an approval wait's timeout at deadline (a
// task may run up to a second early: see NotBefore). The task lives in
// Redis, so it survives restarts and deploys; it does nothing if the wait
// was decided first.
func (c *Client) EnqueueTimeout(ctx context.Context, requestID int64, instanceID, step string, stage int, generation int64, deadline time.Time) error {
	id := "timeout:" + waitID(instanceID, step, stage, generation)
	return c.enqueue(ctx, TypeApprovalTimeout, id, Payload{RequestID: requestID, Generation: generation, Step: step, Stage: stage},
		asynq.ProcessAt(deadline), asynq.MaxRetry(c.retry), asynq.Timeout(c.timeout))
}

// NotBefore is when to schedule a task that must not run before t:
// asynq scores a scheduled task by its time's whole second (Unix) and
// moves it to the queue once the clock reaches that second, up to a
// second before t; the next whole second is never before t.
func NotBefore(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

func waitID(instanceID, step string, stage int, generation int64) string {
	return instanceID + ":" + step + "." + strconv.Itoa(stage) + ":" + strconv.FormatInt(generation, 10)
}

func (c *Client) enqueue(ctx context.Context, typ, id string, p Payload, opts ...asynq.Option) error {
	payload, _ := json.Marshal(p)
	opts = append(opts, asynq.Queue(c.queue), asynq.TaskID(id))
	_, err := c.enqueueTask(ctx, asynq.NewTask(typ, payload), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil // already queued or running
	}
	if err != nil {
		return fmt.Errorf("enqueue %s: %w", id, err)
	}
	return nil
}

// Handlers are what the worker runs for each task type.
type Handlers interface {
	// Run runs or resumes a request's workflow (TypeRun and TypeResume).
	Run(ctx context.Context, requestID, generation int64) error
	DeliverCallback(ctx context.Context, requestID int64) error
	// Timeout fires the timeout of the approval wait at step and stage.
	Timeout(ctx context.Context, requestID, generation int64, step string, stage int) error
}

// ServerConfig tunes the worker server.
type ServerConfig struct {
	Queue           string
	Concurrency     int
	ShutdownTimeout time.Duration
	// PollInterval is how often an idle server looks for tasks.
	PollInterval time.Duration
	// ScheduledInterval is how often the server moves scheduled tasks
	// whose time came to the queue (0: asynq's 5s).
	ScheduledInterval time.Duration
	// CallbackSchedule is the delay before each callback retry.
	CallbackSchedule []time.Duration
	Log              *slog.Logger
}

// NewServer returns an asynq server and the mux that routes certflow's
// tasks to h.
func NewServer(rdb *redis.Client, cfg ServerConfig, h Handlers) (*asynq.Server, *asynq.ServeMux) {
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          map[string]int{cfg.Queue: 1},
		ShutdownTimeout: cfg.ShutdownTimeout,
		// An idle server polls for new tasks this often: it bounds the
		// pickup delay of a task that arrives while the queue is empty.
		TaskCheckInterval:        cfg.PollInterval,
		DelayedTaskCheckInterval: cfg.ScheduledInterval,
		RetryDelayFunc: func(n int, err error, t *asynq.Task) time.Duration {
			if t.Type() == TypeCallback {
				// n counts earlier retries: 0 on the first failure.
				return cfg.CallbackSchedule[min(n, len(cfg.CallbackSchedule)-1)]
			}
			return runRetryDelay(n)
		},
		Logger:   slogAdapter{cfg.Log},
		LogLevel: asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.Use(newWarm(warmIdle).handler)
	run := func(ctx context.Context, t *asynq.Task) error {
		p, err := decode(t)
		if err != nil {
			return err
		}
		return h.Run(ctx, p.RequestID, p.Generation)
	}
	mux.HandleFunc(TypeRun, run)
	mux.HandleFunc(TypeResume, run)
	mux.HandleFunc(TypeApprovalTimeout, func(ctx context.Context, t *asynq.Task) error {
		p, err := decode(t)
		if err != nil {
			return err
		}
		return h.Timeout(ctx, p.RequestID, p.Generation, p.Step, p.Stage)
	})
	mux.HandleFunc(TypeCallback, func(ctx context.Context, t *asynq.Task) error {
		p, err := decode(t)
		if err != nil {
			return err
		}
		return h.DeliverCallback(ctx, p.RequestID)
	})
	return srv, mux
}

// runRetryDelay backs off 1 s, 2 s, 4 s … up to a minute.
func runRetryDelay(n int) time.Duration {
	d := time.Second << min(n, 6)
	return min(d, time.Minute)
}

func decode(t *asynq.Task) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.RequestID <= 0 {
		return p, fmt.Errorf("task %s: bad payload: %w", t.Type(), errors.Join(err, asynq.SkipRetry))
	}
	return p, nil
}

// RetryInfo reports the current attempt of the task in ctx and whether it
// is the last one asynq will make.
func RetryInfo(ctx context.Context) (attempt int, last bool) {
	n, _ := asynq.GetRetryCount(ctx)
	max, ok := asynq.GetMaxRetry(ctx)
	return n, ok && n >= max
}

// slogAdapter routes asynq's logs through slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a slogAdapter) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }

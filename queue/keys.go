package queue

// asynq keeps its queues in Redis under keys it builds in a package of
// its own that is not importable (internal/base). certflow needs a few of
// them: the piggyback recognises asynq's enqueue by its task key, the
// start-up probe removes what its enqueue wrote, and tests look tasks
// up. They are spelled here, once, as asynq spells them; the probe
// (Client.Probe) notices when a newer asynq spells them otherwise.

// AllQueuesKey is the set of the queue names asynq knows.
const AllQueuesKey = "asynq:queues"

// QueueKeyPrefix begins every key of queue's.
func QueueKeyPrefix(queue string) string { return "asynq:{" + queue + "}:" }

// TaskKey is the hash that holds task taskID of queue.
func TaskKey(queue, taskID string) string { return QueueKeyPrefix(queue) + "t:" + taskID }

// PendingKey is the list of queue's tasks ready to run.
func PendingKey(queue string) string { return QueueKeyPrefix(queue) + "pending" }

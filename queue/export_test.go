package queue

import (
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// UnhookedClient is a Client that counts on the piggyback hook but has
// none, as when asynq enqueues in a way the hook does not recognise.
func UnhookedClient(rdb *redis.Client, queue string) *Client {
	return &Client{c: asynq.NewClientFromRedisClient(rdb), rdb: rdb, piggyback: true, queue: queue, retry: 3, timeout: time.Minute, cbRetry: 3}
}

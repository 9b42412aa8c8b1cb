// Package testutil holds helpers shared by certflow's tests so that each
// test states its intent in a line: a real Redis with a private key prefix,
// a whole certflow (API + worker) on a free port, CSRs, a redis-server of a
// test's own to stop and start.
package testutil

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/queue"
)

// RedisURL is the real Redis tests use: CERTFLOW_TEST_REDIS_URL, default
// redis://127.0.0.1:6379/0.
func RedisURL() string {
	return cmp.Or(os.Getenv("CERTFLOW_TEST_REDIS_URL"), "redis://127.0.0.1:6379/0")
}

// Prefix returns a key prefix (also used as the asynq queue name) unique to
// this test.
func Prefix(t testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "cftest-" + hex.EncodeToString(b)
}

// Redis connects to the test Redis and returns a fresh prefix whose keys
// (and asynq queue) are deleted when the test ends. Tests fail, not skip,
// when Redis is unreachable: CI must provide it.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("CERTFLOW_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("test Redis at %s does not answer: %v (start redis-server or set CERTFLOW_TEST_REDIS_URL)", opts.Addr, err)
	}
	prefix := Prefix(t)
	t.Cleanup(func() {
		Cleanup(rdb, prefix)
		rdb.Close()
	})
	return rdb, prefix
}

// Cleanup deletes every key of prefix and of the asynq queue named prefix.
func Cleanup(rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	for _, pattern := range []string{prefix + ":*", queue.QueueKeyPrefix(prefix) + "*"} {
		iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				rdb.Unlink(ctx, batch...)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			rdb.Unlink(ctx, batch...)
		}
	}
	rdb.SRem(ctx, queue.AllQueuesKey, prefix)
}

// Keys counts the keys under prefix.
func Keys(t testing.TB, rdb redis.UniversalClient, prefix string) []string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// KEK is a fresh random key-encryption key.
func KEK(t testing.TB) *pki.KEK {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	kek, err := pki.NewKEK(raw)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// CSR makes a P-256 CSR (DER) for cn with the given DNS SANs.
func CSR(t testing.TB, cn string, dns ...string) ([]byte, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return CSRWithKey(t, key, cn, dns...), key
}

// RSACSR makes an RSA CSR of the given size.
func RSACSR(t testing.TB, bits int, cn string, dns ...string) ([]byte, crypto.Signer) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return CSRWithKey(t, key, cn, dns...), key
}

// CSRWithKey makes a CSR signed by key.
func CSRWithKey(t testing.TB, key crypto.Signer, cn string, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ScheduledTask waits up to 5 s for the asynq task with the given id to
// exist, and returns it. A worker schedules an approval's timeout right
// after it saved the suspension, so a client told PENDING may look before
// the task is there.
func ScheduledTask(t testing.TB, rdb redis.UniversalClient, queue, taskID string) (*asynq.TaskInfo, error) {
	t.Helper()
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := inspector.GetTaskInfo(queue, taskID)
		if err == nil || time.Now().After(deadline) {
			return info, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Package app wires certflow together the same way for the binary and for
// end-to-end tests: configuration, Redis (real or embedded), store, queue,
// CAs, definitions, the API server and the worker.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/certflow/certflow/internal/acme"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/definitions"
	"github.com/certflow/certflow/internal/api"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/secretfile"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/tlsserve"
	"github.com/certflow/certflow/internal/worker"
	"github.com/certflow/certflow/queue"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// Settings are the command line and environment's say over the config
// file; empty fields leave the file's (or the default) value.
type Settings struct {
	ConfigPath  string
	RedisURL    string
	DataDir     string
	Definitions string
	Listen      string
	KEKFile     string
	AdminToken  string
	// TLSListen is the HTTPS address (tls.listen); TLSCertFile and
	// TLSKeyFile its certificate and key; AllowPlainHTTP "true" permits a
	// plain listen address that is not loopback.
	TLSListen      string
	TLSCertFile    string
	TLSKeyFile     string
	AllowPlainHTTP string
}

// FromEnv fills empty fields from CERTFLOW_* environment variables.
func (s Settings) FromEnv() Settings {
	env := func(v *string, name string) {
		if *v == "" {
			*v = os.Getenv(name)
		}
	}
	env(&s.ConfigPath, "CERTFLOW_CONFIG")
	env(&s.RedisURL, "CERTFLOW_REDIS_URL")
	env(&s.DataDir, "CERTFLOW_DATA_DIR")
	env(&s.Definitions, "CERTFLOW_DEFINITIONS")
	env(&s.Listen, "CERTFLOW_LISTEN")
	env(&s.KEKFile, "CERTFLOW_KEK_FILE")
	env(&s.AdminToken, "CERTFLOW_ADMIN_TOKEN")
	env(&s.TLSListen, "CERTFLOW_TLS_LISTEN")
	env(&s.TLSCertFile, "CERTFLOW_TLS_CERT_FILE")
	env(&s.TLSKeyFile, "CERTFLOW_TLS_KEY_FILE")
	env(&s.AllowPlainHTTP, "CERTFLOW_ALLOW_PLAIN_HTTP")
	return s
}

// LoadConfig reads the config file and applies the settings over it.
func LoadConfig(s Settings) (*config.Config, error) {
	cfg, err := config.Load(s.ConfigPath)
	if err != nil {
		return nil, err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.RedisURL, s.RedisURL)
	set(&cfg.DataDir, s.DataDir)
	set(&cfg.Definitions, s.Definitions)
	set(&cfg.Listen, s.Listen)
	set(&cfg.KEKFile, s.KEKFile)
	set(&cfg.TLS.Listen, s.TLSListen)
	set(&cfg.TLS.CertFile, s.TLSCertFile)
	set(&cfg.TLS.KeyFile, s.TLSKeyFile)
	if s.AllowPlainHTTP != "" {
		allow, err := strconv.ParseBool(s.AllowPlainHTTP)
		if err != nil {
			return nil, fmt.Errorf("CERTFLOW_ALLOW_PLAIN_HTTP: want true or false, got %q", s.AllowPlainHTTP)
		}
		cfg.AllowPlainHTTP = allow
	}
	set(&cfg.SMTP.Password, os.Getenv("CERTFLOW_SMTP_PASSWORD"))
	if cfg.KEKFile == "" {
		cfg.KEKFile = filepath.Join(cfg.DataDir, "kek")
	}
	return &cfg, cfg.Validate()
}

// App is a running certflow's parts.
type App struct {
	Config *config.Config
	Log    *slog.Logger
	Redis  *redis.Client
	Store  *store.Store
	Queue  *queue.Client
	KEK    *pki.KEK
	Sender *callback.Sender
	Defs   atomic.Pointer[workflow.Set]
	CAs    *ca.Registry
	Auth   *api.Authenticator
	// Mailer sends the notify step's email; nil without smtp.addr.
	Mailer *notify.Mailer
	// KeyPool bounds the keys the API generates at once (CSR
	// generation); WorkerKeyPool those the worker does (PFX enrollment).
	// Two pools: a backlog of queued PFX enrollments, which one requester
	// can build up, must not turn every other caller's CSR generation
	// away with 429.
	KeyPool       *pki.KeyPool
	WorkerKeyPool *pki.KeyPool
	embedded      *miniredis.Miniredis
	// child is the redis-server run for a certflow with no Redis
	// configured (nil: none).
	child *childRedis
	// redisDown: Redis did not answer at start. The start-up steps that
	// need it are skipped then, rather than each failing with a warning
	// of its own after a dial timeout.
	redisDown bool
	// Out receives the human-facing start-up text (not the log).
	Out io.Writer
	// id tells this process's reload announcements from others'.
	id string
	// caSubjects are the CAs' subjects, which policy keeps out of
	// issued certificates.
	caSubjects *ca.Subjects
	// TLS is the HTTPS certificate (nil with tls.listen off, or in a
	// worker); tlsAddr the HTTPS listener's address once ServeAPI bound it.
	TLS     *tlsserve.Source
	tlsAddr net.Addr
	// http01Addr is acme_client.http01_listen's address once bound.
	http01Addr net.Addr
	// eventSources are events.sources loaded (their secrets read).
	eventSources map[string]*api.EventSource
}

// Role says which halves of certflow a process runs.
type Role int

const (
	RoleAPI Role = 1 << iota
	RoleWorker
	RoleBoth = RoleAPI | RoleWorker
)

// Open connects and loads everything role needs.
func Open(cfg *config.Config, role Role, adminToken string, log *slog.Logger, out io.Writer) (*App, error) {
	a := &App{Config: cfg, Log: log, Out: out, id: randomID(), caSubjects: ca.NewSubjects(cfg),
		KeyPool: pki.NewKeyPool(cfg.API.KeyGenerationConcurrency), WorkerKeyPool: pki.NewKeyPool(cfg.API.KeyGenerationConcurrency)}
	ok := false
	var err error
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if err := SecureDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	if err := a.connectRedis(); err != nil {
		return nil, err
	}
	// Only the default location is created on first start: a KEK path
	// someone named (a secret mount) that is missing is a mistake, and a
	// fresh key there would seal CA keys no other process can open.
	var kek *pki.KEK
	created := false
	if cfg.KEKFile == filepath.Join(cfg.DataDir, "kek") {
		kek, created, err = pki.LoadOrCreateKEKFile(cfg.KEKFile)
	} else {
		kek, err = pki.LoadKEKFile(cfg.KEKFile)
	}
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("generated a key-encryption key; back it up: without it the CA keys cannot be opened", "path", cfg.KEKFile)
	}
	a.KEK = kek
	secret, err := a.webhookSecret()
	if err != nil {
		return nil, err
	}
	a.Sender = callback.NewSender(secret, cfg.Callbacks.AllowPrivate, cfg.Callbacks.Timeout)
	if cfg.SMTP.Addr != "" {
		if a.Mailer, err = notify.NewMailer(cfg.SMTP); err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
	}
	a.Store = store.New(a.Redis, cfg.KeyPrefix)
	a.Store.ProgressEvery = cfg.Worker.ReconcileAfter / 4
	a.Store.EventRetention = cfg.Events.Retention
	// A stored certificate joins the expiry watch's due set at its first
	// threshold (a process with the watch off still keeps the set right).
	a.Store.ExpiryLead = store.ExpiryLeadOf(worker.ExpiryThresholds(cfg.Events.ExpiryWatch))
	a.Store.GroupCommit = cfg.Speed.GroupCommit
	a.Queue = queue.NewClient(a.Redis, cfg.Queue, cfg.Worker.MaxRetry, cfg.Worker.TaskTimeout, len(cfg.Callbacks.Schedule),
		queue.Options{Piggyback: cfg.Speed.Piggyback, GroupCommit: cfg.Speed.GroupCommit, Log: log})
	if role&RoleAPI != 0 && !a.redisDown {
		a.buildInventory(log)
	}
	if role&RoleAPI != 0 && !a.redisDown {
		// Only the API sends records with tasks. A Redis that does not
		// answer yet leaves the probe to the first submit.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.Queue.Probe(ctx); err != nil {
			log.Warn("could not check the piggyback at start; the first submit will", "err", err)
		}
		cancel()
	}
	if role&RoleWorker != 0 {
		reg, made, err := ca.OpenAll(cfg, kek, true, ca.Logger(log), // speed.leaf_encoder from cfg; its self-check reports to log
			ca.External(config.CATypeACME, func(c *config.CA) (ca.Authority, error) {
				return acme.Open(c, acme.Deps{Store: a.Store, KEK: kek, Logger: log, Version: buildVersion()})
			}))
		if err != nil {
			return nil, err
		}
		for _, name := range made {
			log.Info("created built-in CA hierarchy", "ca", name, "dir", filepath.Join(cfg.DataDir, "ca", name))
		}
		a.CAs = reg
	}
	if err := a.LoadDefinitions(); err != nil {
		return nil, err
	}
	if role&RoleAPI != 0 {
		if err := a.openTLS(); err != nil {
			return nil, err
		}
		token, err := a.adminToken(adminToken)
		if err != nil {
			return nil, err
		}
		a.Auth = api.NewAuthenticator(cfg, token, log)
		if err := a.Auth.UseOIDC(cfg.Auth.OIDC); err != nil {
			return nil, err
		}
		// Only the API checks signed events: a worker needs no source's
		// secret.
		if a.eventSources, err = api.LoadEventSources(cfg.Events.Sources); err != nil {
			return nil, err
		}
	}
	ok = true
	return a, nil
}

// openTLS refuses a plain listener beyond loopback unless allowed, and
// loads (or issues) the HTTPS certificate.
func (a *App) openTLS() error {
	cfg := a.Config
	if err := cfg.CheckPlainListen(); err != nil {
		return err
	}
	if cfg.TLS.Listen == config.TLSOff {
		return nil
	}
	src, err := tlsserve.Open(tlsserve.Options{
		CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, Names: cfg.TLS.Names,
		DataDir: cfg.DataDir, KEK: a.KEK, Validity: cfg.TLS.Validity, Log: a.Log,
	})
	if err != nil {
		return err
	}
	a.TLS = src
	return nil
}

// ReloadTLS reloads the HTTPS certificate files now (SIGHUP), or renews
// the issued certificate if due; a failure keeps the served one.
func (a *App) ReloadTLS() {
	if a.TLS != nil {
		a.TLS.Refresh()
	}
}

// HTTPSAddr is the HTTPS listener's address, nil when there is none or
// before ServeAPI has called its ready function.
func (a *App) HTTPSAddr() net.Addr { return a.tlsAddr }

// HTTP01Addr is the address of the http-01 listener (acme_client.http01_listen)
// once ServeAPI bound it; nil without one.
func (a *App) HTTP01Addr() net.Addr { return a.http01Addr }

// inventoryBuildInline is the size of inventory whose indexes Open builds
// before it returns (a few seconds at most); a larger one is built in the
// background, searches refused until it is (enroll.SearchCertificates).
const inventoryBuildInline = 20000

// buildInventory writes the inventory's indexes for certificates stored
// before them (store.BuildInventory), once per store: nothing to do on a
// new store or one built already.
func (a *App) buildInventory(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ready, err := a.Store.InventoryReady(ctx)
	if ready || err != nil {
		if err != nil {
			log.Warn("could not check the inventory's indexes at start; searches are refused until they are built", "err", err)
		}
		return
	}
	_, total, err := a.Store.CertificatePage(ctx, 0, 0)
	if err != nil {
		log.Warn("could not count the inventory at start", "err", err)
		return
	}
	build := func() {
		start := time.Now()
		n, err := a.Store.BuildInventory(context.Background())
		if errors.Is(err, store.ErrBuildBusy) {
			log.Info("another process is building the inventory's indexes")
			return
		}
		if err != nil {
			log.Error("building the inventory's indexes failed; searches stay refused until a restart builds them", "err", err, "indexed", n)
			return
		}
		log.Info("built the inventory's indexes", "certificates", n, "took", time.Since(start).Round(time.Millisecond))
	}
	if total <= inventoryBuildInline {
		build()
		return
	}
	log.Warn("building the inventory's indexes in the background; certificate searches are refused (503) until they are", "certificates", total)
	go build()
}

// SecureDataDir keeps the data directory (the KEK, the sealed CA keys,
// the generated secrets) to its owner: one its group or others may read is
// tightened to owner-only, with a warning; one that cannot be tightened is
// refused (secretfile.SecureDir).
func SecureDataDir(dir string, log *slog.Logger) error {
	tightened, was, err := secretfile.SecureDir(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if tightened {
		log.Warn("the data directory was open to its group or others; tightened it to owner-only", "path", dir, "was", fmt.Sprintf("%04o", was), "now", fmt.Sprintf("%04o", was&^0o077))
	}
	return nil
}

// WarnOnExposedConfigSecrets warns when the config file (s.ConfigPath) holds
// secrets in the clear (a plain user token, the webhook signing secret,
// the SMTP password, a Redis password) and its group or others may read
// it. It warns rather than refuses: a config file is often a shared,
// mounted file, and the fix (chmod 600, "sha256:" tokens, the
// environment) is the operator's choice.
func WarnOnExposedConfigSecrets(s Settings, cfg *config.Config, log *slog.Logger) {
	path := s.ConfigPath
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o077 == 0 {
		return
	}
	var held []string
	for i, u := range cfg.Auth.Users {
		if u.Token != "" && !strings.HasPrefix(u.Token, "sha256:") {
			held = append(held, fmt.Sprintf("auth.users[%d].token", i))
		}
	}
	if cfg.Callbacks.SigningSecret != "" {
		held = append(held, "callbacks.signing_secret")
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Events.Sources)) {
		if cfg.Events.Sources[name].Secret != "" {
			held = append(held, "events.sources."+name+".secret")
		}
	}
	if cfg.SMTP.Password != "" && os.Getenv("CERTFLOW_SMTP_PASSWORD") == "" {
		held = append(held, "smtp.password")
	}
	if u, err := url.Parse(cfg.RedisURL); err == nil && s.RedisURL == "" && u.User != nil {
		if _, ok := u.User.Password(); ok {
			held = append(held, "redis_url's password")
		}
	}
	if len(held) > 0 {
		log.Warn("the config file holds secrets and its group or others may read it: run chmod 600 on it, or give tokens as sha256:<hex> and passwords through the environment",
			"path", path, "mode", fmt.Sprintf("%04o", st.Mode().Perm()), "secrets", strings.Join(held, ", "))
	}
}

// redisClientLog routes go-redis's own log lines (a dial failing, again
// and again, while Redis is down) to certflow's log at debug level:
// certflow says what a Redis failure means itself, once, in its terms.
type redisClientLog struct{ log *slog.Logger }

func (l redisClientLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("redis client: " + fmt.Sprintf(format, v...))
}

func (a *App) connectRedis() error {
	// go-redis has one logger per process: the last certflow opened in it
	// (tests open several) gets the lines.
	redis.SetLogger(redisClientLog{a.Log})
	var opts *redis.Options
	var err error
	if a.Config.RedisURL == "" {
		opts, err = a.zeroSetupRedis()
	} else if opts, err = redis.ParseURL(a.Config.RedisURL); err != nil {
		err = fmt.Errorf("redis url: %w", err)
	}
	if err != nil {
		return err
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 3 * time.Second
	opts.WriteTimeout = 3 * time.Second
	opts.PoolTimeout = 4 * time.Second
	opts.MaxRetries = 1
	// A call's context deadline (api.redis_timeout on the request path)
	// binds its socket reads too: without this go-redis waits out
	// ReadTimeout whatever the deadline, and a hung Redis holds a submit
	// past its bound.
	opts.ContextTimeoutEnabled = true
	a.Redis = redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Redis.Ping(ctx).Err(); err != nil {
		// Start anyway (Redis may come up after certflow): /readyz says
		// not ready and requests answer 503 until Redis answers.
		a.redisDown = true
		a.Log.Error("Redis does not answer: certflow runs, but answers 503 (and /readyz not ready) until it does; check the Redis URL (--redis-url, CERTFLOW_REDIS_URL or redis_url)", "addr", opts.Addr, "err", err)
	}
	return nil
}

// RedisAddr is the address of the Redis this certflow uses (no
// credentials), for messages.
func (a *App) RedisAddr() string { return a.Redis.Options().Addr }

// WaitRedis returns once Redis answers, or with an error after within
// (0: one try; negative: until ctx ends).
func (a *App) WaitRedis(ctx context.Context, within time.Duration) error {
	if within >= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(within, 2*time.Second))
		defer cancel()
	}
	for {
		err := a.Redis.Ping(ctx).Err()
		if err == nil || within == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// zeroSetupRedis is the Redis of a certflow with none configured: a
// redis-server child keeping its data in the data directory when
// redis-server is on the PATH (childRedis), else an in-memory one, with a
// plain warning of what a restart loses. A redis-server that is there but
// does not start is an error, not a reason to fall back to memory.
func (a *App) zeroSetupRedis() (*redis.Options, error) {
	child, err := startChildRedis(a.Config.DataDir, a.Log)
	if err == nil {
		a.child = child
		a.Log.Info("no Redis configured: running redis-server with its data in the data directory (append-only file); it stops with certflow", "dir", child.dir)
		return child.options(), nil
	}
	if !errors.Is(err, errNoRedisServer) {
		return nil, fmt.Errorf("no Redis configured, and the redis-server certflow runs then did not start: %w", err)
	}
	m := miniredis.NewMiniRedis()
	// Without ClockTTL, TTLs never run out in miniredis and asynq's
	// leases and locks would be held for ever.
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded Redis: %w", err)
	}
	a.embedded = m
	a.Log.Warn("no Redis configured and no redis-server on the PATH: using an in-memory Redis. " + InMemoryLoss)
	return &redis.Options{Addr: m.Addr()}, nil
}

// InMemoryLoss says what a restart of a certflow on its in-memory Redis
// loses, and how to keep it; printed at start and answered by GET /Status.
const InMemoryLoss = "NOTHING SURVIVES A RESTART but the CA in the data directory: requests, certificate records and revocations are lost, " +
	"and a revoked certificate is no longer on the CRL. Install redis-server (certflow then runs it, its data in the data directory) or set CERTFLOW_REDIS_URL."

// StoreStatus says where this certflow keeps its records and what a
// restart loses (GET /Status).
func (a *App) StoreStatus() api.StoreStatus {
	switch {
	case a.embedded != nil:
		return api.StoreStatus{Redis: "in-memory", Persistent: false, RestartLoses: InMemoryLoss}
	case a.child != nil:
		return api.StoreStatus{Redis: "redis-server run by certflow, append-only file in the data directory", Persistent: true}
	default:
		return api.StoreStatus{Redis: "configured (redis_url)", Persistent: true}
	}
}

func (a *App) webhookSecret() (callback.Secret, error) {
	if s := a.Config.Callbacks.SigningSecret; s != "" {
		return callback.ParseSecret(s)
	}
	path := filepath.Join(a.Config.DataDir, "webhook-secret")
	secret, created, err := callback.LoadOrCreateSecret(path)
	if created {
		a.Log.Info("generated the callback signing secret; give it to receivers that verify signatures", "path", path)
	}
	return secret, err
}

// adminTokenFile is where a first run's generated admin token is kept.
func (a *App) adminTokenFile() string { return filepath.Join(a.Config.DataDir, "admin-token") }

// adminToken returns the admin bearer token: CERTFLOW_ADMIN_TOKEN, else,
// when no users are configured, one generated into the data dir (printed
// once, when generated).
func (a *App) adminToken(fromEnv string) (string, error) {
	if fromEnv != "" {
		return fromEnv, nil
	}
	path := a.adminTokenFile()
	if len(a.Config.Auth.Users) > 0 {
		// Users are configured: a token generated by an earlier first run
		// must not stay a working admin credential.
		if _, err := os.Stat(path); err == nil {
			a.Log.Warn("ignoring the generated admin token now that users are configured; delete the file", "path", path)
		}
		return "", nil
	}
	text, created, err := secretfile.LoadOrCreate(path, func() ([]byte, error) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		return []byte("cf_" + hex.EncodeToString(raw) + "\n"), nil
	})
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	token := strings.TrimSpace(string(text))
	if created {
		fmt.Fprintf(a.Out, "\nNo users are configured and CERTFLOW_ADMIN_TOKEN is not set: generated an admin API token.\n"+
			"It is shown this once and kept in %s (mode 0600):\n\n    %s\n\n", path, token)
	}
	return token, nil
}

// Catalog returns the step types wired to this app's services, each with
// what its steps use and nothing more (the set step uses nothing). The
// steps that act on certificates from event-triggered definitions submit
// their requests through an enrollment service of their own
// (enroll.Service.Automation), whose key generation shares the worker's
// pool.
func (a *App) Catalog() workflow.Catalog {
	cfg := a.Config
	channels := steps.Notify{AllowPrivate: cfg.Callbacks.AllowPrivate, SMTPAddr: cfg.SMTP.Addr}
	// Interfaces: a nil pointer in one would not read as "none".
	if a.Sender != nil {
		channels.Webhooks = a.Sender
	}
	if a.Mailer != nil {
		channels.Mailer = a.Mailer
	}
	actions := enroll.New(enroll.Options{
		Config: cfg, Store: a.Store, Queue: a.Queue, KEK: a.KEK, Log: a.Log,
		Definitions: &a.Defs, CASubjects: a.caSubjects, KeyPool: a.WorkerKeyPool,
	}).Automation()
	return steps.Types{
		Validate: steps.Validate{Config: cfg, CASubjects: a.caSubjects},
		Issue:    steps.Issue{Config: cfg, CAs: a.CAs, CASubjects: a.caSubjects, Store: a.Store},
		Revoke:   steps.Revoke{CAs: a.CAs, Store: a.Store},
		Metadata: steps.Metadata{Fields: cfg.Metadata},
		Notify:   channels,
		HTTP:     steps.HTTP{Client: callback.NewClient(cfg.Callbacks.AllowPrivate, cfg.Callbacks.Timeout), AllowPrivate: cfg.Callbacks.AllowPrivate},
		// An approval's `notify:` tells the same channels as the notify step.
		Approval: steps.Approval{Notify: channels},
		Search:   steps.Search{Store: a.Store, Config: cfg},
		Enroll:   steps.Enroll{Config: cfg},
	}.WithActions(actions).Catalog()
}

// DefinitionsFS returns where definitions come from: the configured folder,
// or the shipped set when the default folder does not exist.
func DefinitionsFS(dir string) (fs.FS, string, error) {
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return os.DirFS(dir), dir, nil
	}
	if dir == config.DefaultDefinitions {
		return definitions.FS, "(shipped definitions)", nil
	}
	return nil, "", fmt.Errorf("definitions folder %s does not exist", dir)
}

// LoadDefinitions (re)loads the workflow definitions; on error the loaded
// set is unchanged. Each version's source is kept in Redis, so that an
// instance pinned to it can resume in any process after the files change.
func (a *App) LoadDefinitions() error {
	fsys, where, err := DefinitionsFS(a.Config.Definitions)
	if err != nil {
		return err
	}
	set, err := workflow.Load(fsys, a.Catalog())
	if err != nil {
		return fmt.Errorf("definitions in %s do not lint:\n%w", where, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, d := range set.All() {
		if err := a.Store.SaveDefinition(ctx, d.Name, d.Version, d.Source); err != nil {
			// Instances pinned to this version can still run here; other
			// processes store it when they load it. The rest would fail
			// the same way, each after a timeout.
			a.Log.Warn("could not keep the definitions' sources in Redis", "name", d.Name, "version", d.Version, "err", err)
			break
		}
	}
	a.Defs.Store(set)
	for _, d := range set.All() {
		a.Log.Info("loaded workflow definition", "name", d.Name, "trigger", d.Trigger, "priority", d.Priority, "version", d.Version, "from", where)
	}
	return nil
}

// Reload reloads the definitions here and asks every other process to.
func (a *App) Reload(ctx context.Context) error {
	if err := a.LoadDefinitions(); err != nil {
		return err
	}
	if err := a.Store.AnnounceReload(ctx, a.id); err != nil {
		return fmt.Errorf("reloaded here, but could not tell the other processes: %w", err)
	}
	return nil
}

// FollowReloads reloads the definitions whenever another process announces
// a reload, until ctx ends. It returns once the subscription is in place,
// so that a reload announced after it returns is not missed.
func (a *App) FollowReloads(ctx context.Context) {
	subscribed := make(chan struct{})
	go a.Store.OnReload(ctx, func(from string) {
		if from == a.id {
			return
		}
		if err := a.LoadDefinitions(); err != nil {
			a.Log.Error("reload announced by another process refused here; keeping the loaded definitions", "err", err)
		}
	}, subscribed)
	<-subscribed
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// APIServer builds the HTTP server.
func (a *App) APIServer() *api.Server {
	return api.New(api.Options{
		Config: a.Config, Store: a.Store, Queue: a.Queue, KEK: a.KEK, Auth: a.Auth, Log: a.Log,
		Definitions: &a.Defs, Reload: a.Reload, CASubjects: a.caSubjects, KeyPool: a.KeyPool,
		StoreStatus: a.StoreStatus(), EventSources: a.eventSources, HTTP01: a.http01(),
	})
}

// http01 answers ACME http-01 challenges from Redis (a token is there
// only while an acme CA's order is being validated; otherwise 404).
func (a *App) http01() http.Handler { return acme.HTTP01Handler(a.Store) }

// ServeAPI listens on the configured address (plain HTTP) and on
// tls.listen (HTTPS, HTTP/2) until ctx ends, then shuts down gracefully.
// ready, if not nil, receives the plain address; HTTPSAddr is set by then.
func (a *App) ServeAPI(ctx context.Context, ready func(addr net.Addr)) error {
	srv := a.APIServer()
	ln, err := net.Listen("tcp", a.Config.Listen)
	if err != nil {
		return err
	}
	if a.Config.ACMEClient.HTTP01Listen != "" {
		// Port 80 for the CA's http-01 look: that path only.
		cln, err := net.Listen("tcp", a.Config.ACMEClient.HTTP01Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("acme_client.http01_listen: %w", err)
		}
		a.http01Addr = cln.Addr()
		cs := &http.Server{Handler: a.http01(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10,
			ErrorLog: slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn)}
		go cs.Serve(cln)
		defer cs.Close()
	}
	var tlsLn net.Listener
	if a.TLS != nil {
		if tlsLn, err = net.Listen("tcp", a.Config.TLS.Listen); err != nil {
			ln.Close()
			return fmt.Errorf("tls.listen: %w", err)
		}
		a.tlsAddr = tlsLn.Addr()
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      a.Config.API.MaxSyncWait + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	go srv.Listen(lctx)
	errc := make(chan error, 2)
	if tlsLn != nil {
		// ServeTLS adds HTTP/2 to the configuration's protocols; the
		// certificate comes from a.TLS at each handshake.
		hs.TLSConfig = a.TLS.Config()
		go a.TLS.Run(lctx, a.Config.TLS.ReloadInterval)
		go func() { errc <- hs.ServeTLS(tlsLn, "", "") }()
	}
	if ready != nil {
		ready(ln.Addr())
	}
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// Worker is the worker half's task handlers and loops, wired to a's
// services (RunWorker runs them; tests call them directly).
func (a *App) Worker() *worker.Worker {
	return &worker.Worker{
		Config: a.Config, Store: a.Store, Queue: a.Queue, Defs: &a.Defs, Catalog: a.Catalog(),
		Engine: &workflow.Engine{Log: a.Log}, Callbacks: a.Sender, KEK: a.KEK, Log: a.Log, CAs: a.CAs,
		KeyPool: a.WorkerKeyPool,
	}
}

// RunWorker processes tasks until ctx ends, then lets in-flight tasks
// finish (or hands them back) within the shutdown timeout.
func (a *App) RunWorker(ctx context.Context) error {
	w := a.Worker()
	// worker.servers asynq servers share the concurrency: each dequeues in
	// a loop of its own, so one sleeping on an empty queue does not hold
	// up pickup (see config.Worker.Servers).
	n := max(1, min(a.Config.Worker.Servers, a.Config.Worker.Concurrency))
	var servers []*asynq.Server
	stop := func() {
		var wg sync.WaitGroup
		for _, srv := range servers {
			wg.Add(1)
			go func() { defer wg.Done(); srv.Shutdown() }()
		}
		wg.Wait()
	}
	for i := range n {
		concurrency := a.Config.Worker.Concurrency / n
		if i < a.Config.Worker.Concurrency%n {
			concurrency++
		}
		srv, mux := queue.NewServer(a.Redis, queue.ServerConfig{
			Queue: a.Config.Queue, Concurrency: concurrency,
			ShutdownTimeout: a.Config.Worker.ShutdownTimeout, CallbackSchedule: a.Config.Callbacks.Schedule,
			PollInterval: a.Config.Worker.PollInterval, ScheduledInterval: a.Config.Worker.ScheduledInterval,
			Log: a.Log,
		}, w)
		if err := srv.Start(mux); err != nil {
			stop()
			return fmt.Errorf("start worker: %w", err)
		}
		servers = append(servers, srv)
	}
	fmt.Fprintf(a.Out, "certflow worker running: queue %s, concurrency %d over %d servers, Redis %s\n",
		a.Config.Queue, a.Config.Worker.Concurrency, n, a.RedisAddr())
	go w.Reconcile(ctx)
	go w.Sweep(ctx)
	go w.RefreshCRLs(ctx)
	go w.Dispatch(ctx)
	go w.Schedule(ctx)
	go w.WatchExpiry(ctx)
	<-ctx.Done()
	stop() // in parallel: each has the whole shutdown timeout, not a share of it
	return nil
}

// Close releases connections and stops the embedded Redis.
func (a *App) Close() {
	if a.Redis != nil {
		a.Redis.Close()
	}
	if a.embedded != nil {
		a.embedded.Close()
	}
	if a.child != nil {
		a.child.Stop()
	}
}

// buildVersion is the module's version, for user agents.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

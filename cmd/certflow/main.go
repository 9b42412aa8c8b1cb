// Command certflow is the certificate-enrollment workflow engine: one
// binary for the API, the workers, the CA and the tools around them.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/bench"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/dryrun"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

const usage = `certflow — certificate enrollment workflows behind a Keyfactor-compatible API

Usage:
  certflow serve    [flags]   run the API and the workers in one process
  certflow api      [flags]   run the API only
  certflow worker   [flags]   run the workers only
  certflow ca init  [flags]   create the built-in CA hierarchies
  certflow lint     [flags] [file or folder ...]
                              check workflow definitions; exit 1 on any error
  certflow test     [flags] [file or folder ...]
                              run the test cases kept beside definitions (*.test.yaml)
                              with no Redis, CA or network; exit 1 on any failure
  certflow pending  [--url URL]          what waits for your decision (CERTFLOW_TOKEN)
  certflow approve  [--url URL] [--comment C] ID ...
  certflow deny     [--url URL] --comment C ID ...
                              decide requests (request or instance ids)
  certflow inventory check [--repair]
                              compare the certificate inventory's indexes with the
                              records; --repair adds what is missing, drops what is stale
  certflow healthcheck [--url URL] [--redis]
                              exit 0 if certflow answers /readyz (or Redis answers), else 1
  certflow bench    --requests N --concurrency C [--target URL] [--key ec|rsa] [--rate R] [--off piggyback,group_commit,leaf_encoder] [--authority NAME --config FILE]
                    [--cpuprofile FILE] [--memprofile FILE]
                              enrollments per second against bare asynq in the same run
  certflow version            the version, commit and Go release
  certflow help COMMAND       a command's own flags (as does COMMAND --help)

Settings (flags of serve, api, worker; each also an environment variable):
  --config FILE          CERTFLOW_CONFIG        configuration file (optional)
  --redis-url URL        CERTFLOW_REDIS_URL     redis://host:port/db; empty: embedded in-memory Redis
  --data-dir DIR         CERTFLOW_DATA_DIR      CA files, KEK, generated secrets (default .certflow)
  --definitions DIR      CERTFLOW_DEFINITIONS   workflow definitions (default definitions/)
  --listen ADDR          CERTFLOW_LISTEN        API plain-HTTP address (default 127.0.0.1:8080; loopback
                                                unless CERTFLOW_ALLOW_PLAIN_HTTP=true)
  --tls-listen ADDR      CERTFLOW_TLS_LISTEN    API HTTPS address (default 127.0.0.1:8443; off: none)
                         CERTFLOW_TLS_CERT_FILE, CERTFLOW_TLS_KEY_FILE
                                                HTTPS certificate and key (default: issued by certflow)
                         CERTFLOW_KEK_FILE      key-encryption key (default <data-dir>/kek)
                         CERTFLOW_ADMIN_TOKEN   an admin bearer token
                         CERTFLOW_LOG_LEVEL     debug, info (default), warn, error
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "certflow:", err)
		os.Exit(1)
	}
}

type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func run(args []string, stdout, stderr io.Writer) error {
	err := dispatch(args, stdout, stderr)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

// dispatch runs one command. Each command has its own flag set, so its
// --help shows only its flags, and refuses arguments it does not take
// (exit 2).
func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help":
		return helpFor(args, stdout)
	case "version", "--version":
		fset := newFlagSet("version", "", "Print the version, the commit it was built from and the Go release.", stderr)
		pos, err := parseArgs(fset, args)
		if err != nil {
			return err
		}
		if err := noArgs(fset, pos); err != nil {
			return err
		}
		fmt.Fprintln(stdout, versionLine())
		return nil
	case "bench":
		return runBench(args, stdout, stderr)
	case "pending", "approve", "deny":
		return runApprove(cmd, args, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(args, stdout, stderr)
	case "ca", "inventory":
		sub := map[string]string{"ca": "init", "inventory": "check"}[cmd]
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			args = append([]string{sub}, args...)
		}
		if len(args) == 0 || args[0] != sub {
			fmt.Fprintf(stderr, "usage: certflow %s %s [flags] (see certflow help %[1]s)\n", cmd, sub)
			return exitCode(2)
		}
		cmd, args = cmd+" "+sub, args[1:]
	}
	var s app.Settings
	var fset *flag.FlagSet
	var repair, verbose bool
	switch cmd {
	case "serve", "api", "worker":
		about := map[string]string{
			"serve":  "Run the API and the workers in one process. With no Redis configured it runs an embedded one.",
			"api":    "Run the API only; workers (certflow worker) share the work through Redis.",
			"worker": "Run the workers only, against the Redis the API uses.",
		}[cmd]
		fset = newFlagSet(cmd, "[flags]", about, stderr)
		settingFlags(fset, &s, "config", "redis-url", "data-dir", "definitions", "listen", "tls-listen")
	case "ca init":
		fset = newFlagSet(cmd, "[flags]", "Create the built-in CA hierarchies (and the KEK) in the data directory; existing ones are kept.", stderr)
		settingFlags(fset, &s, "config", "data-dir")
	case "lint":
		fset = newFlagSet(cmd, "[flags] [file or folder ...]", "Check workflow definitions (default: the configured folder); print every error, exit 1 on any.", stderr)
		settingFlags(fset, &s, "config", "definitions")
	case "test":
		fset = newFlagSet(cmd, "[flags] [file or folder ...]", "Run the test cases kept beside workflow definitions (<name>.test.yaml; default: the configured\n"+
			"folder and the folders under it) with no Redis, CA or network: print ok or FAIL per case and\n"+
			"file:line for each failure; exit 1 on any failure or load error. See docs/testing-definitions.md.", stderr)
		settingFlags(fset, &s, "config", "definitions")
		fset.BoolVar(&verbose, "v", false, "also show what each case's runs did: steps, notifications, calls, actions")
	case "inventory check":
		fset = newFlagSet(cmd, "[--repair] [flags]", "Compare the certificate inventory's indexes in Redis with the records; exit 1 on a difference not repaired.", stderr)
		settingFlags(fset, &s, "config", "redis-url")
		fset.BoolVar(&repair, "repair", false, "add missing index entries and remove stale ones")
	default:
		fmt.Fprintf(stderr, "certflow: unknown command %q\n\n%s", cmd, usage)
		return exitCode(2)
	}
	positional, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	if cmd != "lint" && cmd != "test" {
		if err := noArgs(fset, positional); err != nil {
			return err
		}
	}
	s = s.FromEnv()
	log := newLogger(stderr)
	switch cmd {
	case "serve":
		return serve(s, app.RoleBoth, log, stdout)
	case "api":
		return serve(s, app.RoleAPI, log, stdout)
	case "worker":
		return serve(s, app.RoleWorker, log, stdout)
	case "ca init":
		return caInit(s, stdout)
	case "lint":
		return lint(s, positional, stdout)
	case "test":
		return testDefinitions(s, positional, verbose, stdout)
	default:
		return inventoryCheck(s, repair, stdout)
	}
}

func newLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("CERTFLOW_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// defaultGOGC is the garbage collector's target for the long-running
// commands when GOGC is not set: certflow's live heap is small and each
// enrollment allocates a lot of short-lived memory, so collecting less
// often trades a little more heap for less CPU per enrollment (the
// figures are in the README's configuration table and
// docs/speed-history.md). GOGC in the environment takes precedence, and
// GOMEMLIMIT caps the heap as usual.
const defaultGOGC = 300

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGOGC)
	}
}

func serve(s app.Settings, role app.Role, log *slog.Logger, out io.Writer) error {
	tuneGC()
	cfg, err := app.LoadConfig(s)
	if err != nil {
		return err
	}
	app.WarnOnExposedConfigSecrets(s, cfg, log)
	if cfg.RedisURL == "" && role != app.RoleBoth {
		return errors.New("`certflow api` and `certflow worker` share work through Redis: set CERTFLOW_REDIS_URL or --redis-url (or use `certflow serve`)")
	}
	a, err := app.Open(cfg, role, s.AdminToken, log, out)
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go reloadOnHUP(ctx, a)
	a.FollowReloads(ctx)
	errc := make(chan error, 2)
	if role&app.RoleWorker != 0 {
		go func() { errc <- a.RunWorker(ctx) }()
	}
	if role&app.RoleAPI != 0 {
		go func() {
			errc <- a.ServeAPI(ctx, func(addr net.Addr) { go announce(ctx, out, a, addr) })
		}()
	}
	n := 0
	if role&app.RoleWorker != 0 {
		n++
	}
	if role&app.RoleAPI != 0 {
		n++
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil && first == nil {
			first = err
			stop() // one half failed: stop the other
		}
	}
	log.Info("certflow stopped")
	return first
}

func reloadOnHUP(ctx context.Context, a *app.App) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			a.ReloadTLS()
			if err := a.Reload(ctx); err != nil {
				a.Log.Error("SIGHUP: reload refused; keeping the loaded definitions", "err", err)
			}
		}
	}
}

// ReadyPrefix starts the line serve and api print on standard output once
// the API listens, Redis answers and the CA and admin token files exist:
// "certflow ready: <base URL>", then " (admin token in <file>)" when the
// token was generated. Scripts wait for it (or poll GET /readyz); its
// shape is kept stable.
const ReadyPrefix = "certflow ready: "

// announce prints what a newcomer needs once the API listens: the ready
// line, after the "try it" example. While Redis does not answer it says
// so plainly instead, and prints them once Redis does.
func announce(ctx context.Context, out io.Writer, a *app.App, addr net.Addr) {
	base := "http://" + addr.String()
	if err := a.WaitRedis(ctx, 0); err != nil {
		fmt.Fprintf(out, "\ncertflow is listening on %s but is NOT READY: Redis at %s does not answer.\n"+
			"Requests get 503 until it does; check the Redis URL (--redis-url, CERTFLOW_REDIS_URL or redis_url).\n", base, a.RedisAddr())
		if a.WaitRedis(ctx, -1) != nil {
			return
		}
	}
	token := filepath.Join(a.Config.DataDir, "admin-token")
	generated := fileExists(token) && os.Getenv("CERTFLOW_ADMIN_TOKEN") == "" && len(a.Config.Auth.Users) == 0
	printWelcome(out, a, base, token, generated)
	ready := ReadyPrefix + base
	if generated {
		ready += " (admin token in " + token + ")"
	}
	fmt.Fprintln(out, ready)
}

func printWelcome(out io.Writer, a *app.App, base, token string, generated bool) {
	auth := `-H "Authorization: Bearer $CERTFLOW_ADMIN_TOKEN"`
	if generated {
		auth = fmt.Sprintf(`-H "Authorization: Bearer $(cat %s)"`, token)
	}
	fmt.Fprintf(out, `
certflow is listening on %[1]s

Try it (a P-256 key and CSR with openssl, then a synchronous enrollment):

  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout demo.key \
      -subj "/CN=demo.example.com" -outform DER -out demo.csr
  curl -s %[1]s/Enrollment/CSR %[2]s \
      -H "Content-Type: application/json" -H "x-certificateformat: PEM" \
      -d "{\"CSR\": \"$(openssl base64 -A -in demo.csr)\", \"Template\": \"WebServer\", \"IncludeChain\": true, \"Timestamp\": \"$(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ)\"}"

Add -H "Prefer: respond-async" to get 202 and a Location to poll.
`, base, auth)
	printHTTPS(out, a)
	switch st := a.StoreStatus(); {
	case !st.Persistent:
		fmt.Fprintln(out, "\nRunning on an in-memory Redis: "+st.RestartLoses)
	case a.Config.RedisURL == "":
		fmt.Fprintf(out, "\nRecords are kept by a redis-server certflow runs, in %s.\n", filepath.Join(a.Config.DataDir, "redis"))
	}
	fmt.Fprintln(out)
}

// printHTTPS says where HTTPS is served and what a client must trust.
func printHTTPS(out io.Writer, a *app.App) {
	addr := a.HTTPSAddr()
	if addr == nil {
		return
	}
	fmt.Fprintf(out, "\nHTTPS (HTTP/2, TLS 1.2+) on https://%s", addr)
	if bundle := a.TLS.BundlePath(); bundle != "" {
		fmt.Fprintf(out, " for %s;\nclients trust the CA bundle %s (e.g. curl --cacert %s https://localhost:%d/Status/Endpoints)\n",
			strings.Join(a.TLS.Names(), ", "), bundle, bundle, addr.(*net.TCPAddr).Port)
		return
	}
	fmt.Fprintf(out, " with the certificate in %s\n", a.Config.TLS.CertFile)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func caInit(s app.Settings, out io.Writer) error {
	cfg, err := app.LoadConfig(s)
	if err != nil {
		return err
	}
	if err := app.SecureDataDir(cfg.DataDir, slog.New(slog.NewTextHandler(out, nil))); err != nil {
		return err
	}
	kek, created, err := pki.LoadOrCreateKEKFile(cfg.KEKFile)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(out, "generated key-encryption key %s — back it up\n", cfg.KEKFile)
	}
	_, made, err := ca.OpenAll(cfg, kek, true)
	if err != nil {
		return err
	}
	for _, c := range cfg.CAs {
		state := "already exists"
		for _, m := range made {
			if m == c.Name {
				state = "created"
			}
		}
		fmt.Fprintf(out, "%s: %s (%s)\n", c.QualifiedName(), state, filepath.Join(cfg.DataDir, "ca", c.Name))
	}
	return nil
}

// lint checks definition files and folders (default: the configured
// folder) and prints every problem; it exits 1 if there is any.
func lint(s app.Settings, paths []string, out io.Writer) error {
	cfg, err := app.LoadConfig(s)
	if err != nil {
		return err
	}
	catalog := steps.ForLint(cfg).Catalog()
	if len(paths) == 0 {
		paths = []string{cfg.Definitions}
	}
	failed := false
	for _, p := range paths {
		var set *workflow.Set
		st, err := os.Stat(p)
		if err == nil && !st.IsDir() && workflow.IsTestFile(p) {
			// A test file named on the command line is checked as one.
			var tf *dryrun.TestFile
			data, err := os.ReadFile(p)
			if err == nil {
				tf, err = dryrun.ParseFile(p, data)
			}
			if err != nil {
				failed = true
				fmt.Fprintln(out, strings.TrimSpace(err.Error()))
				continue
			}
			fmt.Fprintf(out, "ok  %s  %d test cases (certflow test runs them)\n", p, len(tf.Cases))
			continue
		}
		switch {
		case err != nil && p == cfg.Definitions:
			var fsys fs.FS
			if fsys, _, err = app.DefinitionsFS(p); err == nil {
				set, err = workflow.Load(fsys, catalog)
			}
		case err != nil:
		case st.IsDir():
			set, err = workflow.Load(os.DirFS(p), catalog)
		default:
			set, err = workflow.LoadFiles(os.DirFS(filepath.Dir(p)), []string{filepath.Base(p)}, catalog)
		}
		if err != nil {
			failed = true
			fmt.Fprintln(out, strings.TrimSpace(err.Error()))
			continue
		}
		for _, d := range set.All() {
			file := p // a file named on the command line is shown as given, once
			if st == nil || st.IsDir() {
				file = filepath.Join(p, d.File)
			}
			fmt.Fprintf(out, "ok  %s  %s (trigger %s, priority %d, %d steps, version %s)\n", file, d.Name, d.Trigger, d.Priority, len(d.Steps), d.Version)
		}
	}
	if failed {
		return exitCode(1)
	}
	return nil
}

// testDefinitions runs the test cases kept beside definitions (default:
// the configured folder, or the shipped set when the default folder does
// not exist) and prints each case's outcome; it exits 1 on any failure.
func testDefinitions(s app.Settings, paths []string, verbose bool, out io.Writer) error {
	cfg, err := app.LoadConfig(s)
	if err != nil {
		return err
	}
	if cfg.SMTP.Addr == "" {
		// A test sends no mail: e-mailing definitions are tested as if
		// a server were configured, and the output says certflow itself
		// would not load them (certflow lint reports the same).
		cfg.SMTP.Addr, cfg.SMTP.From = testSMTPAddr, "certflow <certflow@example.invalid>"
		fmt.Fprintf(out, "note: smtp.addr is not configured: definitions that send e-mail are tested as if it were, but certflow will not load them without it\n")
	}
	h, err := dryrun.New(dryrun.Options{Config: cfg})
	if err != nil {
		return err
	}
	ctx := context.Background()
	var results []dryrun.FolderResult
	if len(paths) == 0 {
		if st, err := os.Stat(cfg.Definitions); err == nil && st.IsDir() {
			paths = []string{cfg.Definitions}
		} else {
			fsys, where, err := app.DefinitionsFS(cfg.Definitions)
			if err != nil {
				return err
			}
			results = append(results, h.RunFolder(ctx, fsys, where))
		}
	}
	for _, p := range paths {
		results = append(results, h.RunPath(ctx, p)...)
	}
	if !dryrun.Print(out, results, verbose) {
		return exitCode(1)
	}
	return nil
}

// testSMTPAddr stands in for an unconfigured smtp.addr in `certflow test`.
const testSMTPAddr = "smtp.example.invalid:25"

// inventoryCheck compares the certificate inventory's indexes with the
// records (store.CheckInventory) and prints what it found; it exits 1 if
// anything was wrong and not repaired.
func inventoryCheck(s app.Settings, repair bool, out io.Writer) error {
	cfg, err := app.LoadConfig(s)
	if err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		return errors.New("`certflow inventory check` reads the inventory in Redis: set CERTFLOW_REDIS_URL or --redis-url")
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	st := store.New(rdb, cfg.KeyPrefix)
	ctx := context.Background()
	if ready, err := st.InventoryReady(ctx); err != nil {
		return err
	} else if !ready {
		fmt.Fprintln(out, "the inventory's indexes were never built for this store (certflow builds them at start); building them now")
		if _, err := st.BuildInventory(ctx); err != nil {
			return err
		}
	}
	rep, err := st.CheckInventory(ctx, repair)
	if err != nil {
		return err
	}
	for _, e := range rep.Missing {
		fmt.Fprintln(out, "missing:", e)
	}
	for _, e := range rep.Stale {
		fmt.Fprintln(out, "stale:  ", e)
	}
	for _, id := range rep.Unreadable {
		fmt.Fprintf(out, "unreadable: the certificate of request %d does not decode; its index entries are left as they are\n", id)
	}
	verdict := "consistent"
	switch {
	case len(rep.Missing)+len(rep.Stale) > 0 && repair:
		verdict = "repaired"
	case len(rep.Missing)+len(rep.Stale) > 0:
		verdict = "INCONSISTENT (run again with --repair)"
	}
	if len(rep.Unreadable) > 0 {
		verdict += fmt.Sprintf("; %d certificates unreadable (see above)", len(rep.Unreadable))
	}
	fmt.Fprintf(out, "%d certificates, %d missing index entries, %d stale: %s\n", rep.Certificates, len(rep.Missing), len(rep.Stale), verdict)
	if (len(rep.Missing)+len(rep.Stale) > 0 && !repair) || len(rep.Unreadable) > 0 {
		return exitCode(1)
	}
	return nil
}

// runBench is `certflow bench`: see internal/bench.
func runBench(args []string, stdout, stderr io.Writer) error {
	fset := newFlagSet("bench", "--requests N --concurrency C [--target URL] [flags]",
		"Enroll N distinct CSRs over HTTP and time bare asynq no-op tasks in the same run.\n"+
			"Without --target it runs certflow in-process against CERTFLOW_REDIS_URL (or an embedded Redis).\n"+
			"With --target the token is CERTFLOW_TOKEN (or CERTFLOW_ADMIN_TOKEN), as for certflow pending.\n"+
			"With --authority (a CA of type acme in --config's file) it makes the same load through that CA after the built-in one's,\n"+
			"answering http-01 on the file's acme_client.http01_listen, and reports both rates and their ratio.\n"+
			"Any enrollment that does not come back issued (a 429, say) fails the run: exit 1, saying why.", stderr)
	var o bench.Options
	fset.IntVar(&o.Requests, "requests", 1000, "enrollments to make")
	fset.IntVar(&o.Concurrency, "concurrency", 32, "concurrent HTTP clients")
	fset.StringVar(&o.Target, "target", "", "a running certflow's URL (default: start one in-process)")
	fset.StringVar(&o.Key, "key", "ec", "CSR key type: ec (P-256) or rsa (2048)")
	fset.Float64Var(&o.Rate, "rate", 0, "submissions per second, open loop (default: as fast as the clients go)")
	fset.IntVar(&o.WorkerConcurrency, "worker-concurrency", 0, "worker (and baseline) concurrency (default: the worker default)")
	fset.StringVar(&o.Definitions, "definitions", "", "definitions folder for the in-process certflow")
	fset.StringVar(&o.Authority, "authority", "", "also load through this certificate authority (type acme) of --config, in the same run")
	fset.StringVar(&o.Config, "config", "", "configuration file that defines --authority (default: CERTFLOW_CONFIG when --authority is given)")
	off := fset.String("off", "", "speed shortcuts the in-process certflow runs without, comma-separated: piggyback, group_commit, leaf_encoder (docs/speed.md)")
	cpuProfile := fset.String("cpuprofile", "", "write a CPU profile of the timed enrollments to this file")
	memProfile := fset.String("memprofile", "", "write an allocation profile of the run to this file")
	positional, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	if err := noArgs(fset, positional); err != nil {
		return err
	}
	if *off != "" {
		if o.Target != "" {
			return errors.New("--off applies to the in-process certflow; a --target's own configuration decides its shortcuts")
		}
		o.Off = strings.Split(*off, ",")
		if err := new(config.Speed).TurnOff(o.Off...); err != nil {
			return err
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		o.CPUProfile = f
	}
	if o.Authority != "" && o.Config == "" {
		o.Config = os.Getenv("CERTFLOW_CONFIG")
	}
	tuneGC() // as the server commands do: the baseline runs under it too
	o.RedisURL = os.Getenv("CERTFLOW_REDIS_URL")
	o.Token = cmp.Or(os.Getenv("CERTFLOW_TOKEN"), os.Getenv("CERTFLOW_ADMIN_TOKEN"))
	o.Progress = stderr
	if o.Target != "" && o.Token == "" {
		return errors.New("--target needs CERTFLOW_TOKEN (a token with the requester or admin role; CERTFLOW_ADMIN_TOKEN is read when it is unset)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	res.Print(stdout)
	return nil
}

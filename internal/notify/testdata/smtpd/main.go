// Command smtpd is the SMTP server certflow's email tests run as a process
// of their own: STARTTLS (or implicit TLS, or none) with the certificate
// the test made, AUTH PLAIN with the test's credentials, and every message
// and AUTH attempt written to -dir for the test to read:
//
//	msg-<n>.json  one per accepted message (Message)
//	auth.jsonl    one line per AUTH attempt (AuthEvent)
//
// With -stall it greets nobody and answers nothing: a server that hangs.
package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is what msg-<n>.json holds.
type Message struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	// TLS: the session was encrypted when DATA came.
	TLS bool `json:"tls"`
	// User is who authenticated, "" for nobody.
	User string `json:"user"`
	Data string `json:"data"`
}

// AuthEvent is one line of auth.jsonl.
type AuthEvent struct {
	Mechanism string `json:"mechanism"`
	// TLS: the session was encrypted when AUTH came.
	TLS  bool   `json:"tls"`
	User string `json:"user"`
	OK   bool   `json:"ok"`
}

var (
	addr     = flag.String("addr", "127.0.0.1:2525", "listen address")
	dir      = flag.String("dir", ".", "where messages and auth events are written")
	certFile = flag.String("cert", "", "server certificate (PEM)")
	keyFile  = flag.String("key", "", "server key (PEM)")
	mode     = flag.String("tls", "starttls", "starttls, implicit or none")
	user     = flag.String("user", "", "AUTH PLAIN username")
	pass     = flag.String("pass", "", "AUTH PLAIN password")
	stall    = flag.Bool("stall", false, "accept connections and never answer")
)

func main() {
	flag.Parse()
	log.SetPrefix("smtpd: ")
	if *stall {
		stallForever()
	}
	s := smtp.NewServer(&backend{})
	s.Addr = *addr
	s.Domain = "smtpd.test"
	switch *mode {
	case "starttls", "implicit":
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	case "none":
		// AUTH is offered in clear, so that a test can see whether a
		// client that should refuse tries it anyway.
		s.AllowInsecureAuth = true
	default:
		log.Fatalf("-tls %q", *mode)
	}
	var err error
	if *mode == "implicit" {
		err = s.ListenAndServeTLS()
	} else {
		err = s.ListenAndServe()
	}
	log.Fatal(err)
}

func stallForever() {
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var held []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		held = append(held, c) // never read, written or closed
	}
}

type backend struct{}

func (backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{conn: c}, nil
}

type session struct {
	conn *smtp.Conn
	user string
	from string
	to   []string
}

var (
	_ smtp.AuthSession = (*session)(nil)

	seq    atomic.Int64
	authMu sync.Mutex
)

func (s *session) isTLS() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, errors.New("unsupported mechanism")
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		ok := username == *user && password == *pass
		record(AuthEvent{Mechanism: mech, TLS: s.isTLS(), User: username, OK: ok})
		if !ok {
			return errors.New("invalid credentials")
		}
		s.user = username
		return nil
	}), nil
}

func record(ev AuthEvent) {
	authMu.Lock()
	defer authMu.Unlock()
	f, err := os.OpenFile(filepath.Join(*dir, "auth.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	line, _ := json.Marshal(ev)
	f.Write(append(line, '\n'))
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if *user != "" && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(Message{From: s.from, To: s.to, TLS: s.isTLS(), User: s.user, Data: string(data)})
	// Written then renamed: the test never sees half a message.
	name := filepath.Join(*dir, fmt.Sprintf("msg-%d.json", seq.Add(1)))
	if err := os.WriteFile(name+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(name+".tmp", name)
}

func (s *session) Reset() { s.from, s.to = "", nil }

func (s *session) Logout() error { return nil }

// Package notify sends certflow's notifications that are not webhooks:
// email over SMTP, for the notify step.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
)

// Mailer sends plain-text mail through the configured SMTP server. It is
// safe for concurrent use; each Send is one connection.
type Mailer struct {
	addr, host string
	from       *mail.Address
	username   string
	password   string
	mode       string // starttls, implicit, none
	timeout    time.Duration
	tls        *tls.Config
	helo       string
}

// NewMailer checks cfg (already validated by config.Validate) and reads its
// CA file.
func NewMailer(cfg config.SMTP) (*Mailer, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtp.addr: %w", err)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("smtp.from: %w", err)
	}
	roots, err := pki.RootsWith(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("smtp.ca_file: %w", err)
	}
	helo, err := os.Hostname()
	if err != nil || strings.ContainsAny(helo, " \r\n") || helo == "" {
		helo = "localhost"
	}
	m := &Mailer{
		addr: cfg.Addr, host: host, from: from,
		username: cfg.Username, password: cfg.Password,
		mode: cfg.TLS, timeout: cfg.Timeout, helo: helo,
		tls: &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12},
	}
	if m.mode == "" {
		m.mode = "starttls"
	}
	if m.timeout <= 0 {
		m.timeout = 30 * time.Second
	}
	return m, nil
}

// CheckAddress reports whether s is one mail address ("a@example.com" or
// "A <a@example.com>") fit for a header: no CR, LF or other control
// character, and an ASCII addr-spec (certflow does not send SMTPUTF8
// mail). A display name may be any text: it is sent encoded (RFC 2047).
func CheckAddress(s string) error {
	_, err := parseAddress(s)
	return err
}

func parseAddress(s string) (*mail.Address, error) {
	if err := CheckHeaderText(s); err != nil {
		return nil, fmt.Errorf("address %q %w", s, err)
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s, err)
	}
	// A display name may itself be an encoded word that decodes to a line
	// break; Address.String encodes it again, so it stays on its line.
	for _, r := range a.Address {
		if r >= utf8.RuneSelf {
			return nil, fmt.Errorf("address %q is not ASCII: internationalised addresses (SMTPUTF8) are not supported", a.Address)
		}
	}
	return a, nil
}

// CheckHeaderText reports whether s may be a header's value once encoded:
// no CR or LF (a line break would start a header of the value's choosing)
// and no other control character. Non-ASCII text is fine: it is sent
// encoded (RFC 2047). The error reads after the header's name ("subject
// contains a line break").
func CheckHeaderText(s string) error {
	if strings.ContainsAny(s, "\r\n") {
		return errors.New("contains a line break")
	}
	if strings.ContainsFunc(s, isControl) {
		return errors.New("contains a control character")
	}
	return nil
}

// isControl: C0 controls but tab, DEL, and C1 controls.
func isControl(r rune) bool {
	return r < 0x20 && r != '\t' || r >= 0x7f && r < 0xa0
}

// Send delivers one text/plain message to every address in to. messageID
// ("local@domain", without angle brackets) becomes the Message-ID header:
// a re-send of the same notification carries the same id, so that
// receivers can tell it is one. Send returns when ctx ends or the
// configured timeout passes, whichever is first. Its errors never hold
// the password.
func (m *Mailer) Send(ctx context.Context, to []string, subject, body, messageID string) error {
	msg, rcpts, err := m.message(to, subject, body, messageID, time.Now())
	if err != nil {
		return err
	}
	if err := m.send(ctx, rcpts, msg); err != nil {
		cerr := ctx.Err()
		if d, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(d) {
			// The connection's deadline, set to ctx's, may fire before
			// ctx's own timer does.
			cerr = context.DeadlineExceeded
		}
		if cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return &sendError{err: fmt.Errorf("smtp %s: %w", m.addr, err), password: m.password}
	}
	return nil
}

// message builds the RFC 5322 message and the envelope recipients.
func (m *Mailer) message(to []string, subject, body, messageID string, now time.Time) ([]byte, []string, error) {
	if len(to) == 0 {
		return nil, nil, errors.New("email: no recipients")
	}
	var rcpts, header []string
	for _, s := range to {
		a, err := parseAddress(s)
		if err != nil {
			return nil, nil, fmt.Errorf("email to: %w", err)
		}
		rcpts = append(rcpts, a.Address)
		header = append(header, a.String())
	}
	if err := CheckHeaderText(subject); err != nil {
		return nil, nil, fmt.Errorf("email subject %w", err)
	}
	if messageID == "" || strings.ContainsAny(messageID, "<>\r\n\t ") || !strings.Contains(messageID, "@") {
		return nil, nil, fmt.Errorf("email message id %q is not local@domain", messageID)
	}
	subj := mime.QEncoding.Encode("utf-8", strings.ToValidUTF8(subject, "\uFFFD"))
	// Encoded words may be folded onto continuation lines (RFC 2047 §2);
	// plain text is kept on one line, which must stay under RFC 5322's 998.
	subj = strings.ReplaceAll(subj, "?= =?", "?=\r\n =?")
	for line := range strings.SplitSeq(subj, "\r\n") {
		if len(line) > 900 {
			return nil, nil, errors.New("email subject is longer than 900 bytes")
		}
	}
	var b bytes.Buffer
	for _, h := range [][2]string{
		{"From", m.from.String()},
		{"To", strings.Join(header, ",\r\n ")},
		{"Subject", subj},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + messageID + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
	} {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	// SMTP data ends with a line break whatever the body: say so here.
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ToValidUTF8(body, "\uFFFD")))
	qp.Close()
	return b.Bytes(), rcpts, nil
}

// send runs one SMTP session. net/smtp has no context: the connection's
// deadline carries both ctx's and the timeout, and ctx ending moves it to
// now, which fails whatever read or write is waiting.
func (m *Mailer) send(ctx context.Context, rcpts []string, msg []byte) error {
	deadline := time.Now().Add(m.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var conn net.Conn
	var err error
	dialer := &net.Dialer{}
	if m.mode == "implicit" {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: m.tls}).DialContext(dctx, "tcp", m.addr)
	} else {
		conn, err = dialer.DialContext(dctx, "tcp", m.addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(m.helo); err != nil {
		return err
	}
	if m.mode == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("the server does not offer STARTTLS (smtp.tls: starttls)")
		}
		if err := c.StartTLS(m.tls); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if m.username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server does not offer AUTH")
		}
		// PlainAuth itself refuses a connection without TLS unless the
		// server is on localhost.
		if err := c.Auth(smtp.PlainAuth("", m.username, m.password, m.host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("rcpt to %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	// The server has taken the message: a failed QUIT changes nothing.
	c.Quit()
	return nil
}

// sendError keeps the password out of an error's text, whatever the
// server or a library put in it.
type sendError struct {
	err      error
	password string
}

func (e *sendError) Error() string {
	if e.password == "" {
		return e.err.Error()
	}
	return strings.ReplaceAll(e.err.Error(), e.password, "[redacted]")
}

func (e *sendError) Unwrap() error { return e.err }

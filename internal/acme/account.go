package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/secretfile"
	"github.com/certflow/certflow/internal/store"
)

// accountKeyAAD binds a sealed account key to its CA and directory.
func accountKeyAAD(ca, directory string) []byte {
	return []byte("certflow-acme-account/" + strings.ToLower(ca) + "/" + directory)
}

// client returns the lego client signing as the CA's account at its
// directory, registering the account on first use: the key is made once
// for all processes (the first stored wins), and registering one key
// again gives its one account, so processes racing here agree on one kid.
func (a *Authority) client(ctx context.Context) (*api.Core, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.core != nil {
		return a.core, nil
	}
	dir := a.cfg.Directory
	rec, err := a.st.ACMEAccount(ctx, a.name, dir)
	if errors.Is(err, store.ErrNotFound) {
		rec.SealedKey, err = a.newAccountKey(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("acme %s: account: %w", a.name, err)
	}
	der, err := a.kek.Open(rec.SealedKey, accountKeyAAD(a.name, dir))
	if err != nil {
		return nil, fmt.Errorf("acme %s: account key: %w", a.name, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("acme %s: account key does not parse: %w", a.name, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("acme %s: account key is a %T", a.name, parsed)
	}
	ctx, slot := withRetryAfter(ctx)
	a.transport.directory.set(0)
	core, err := api.New(a.httpClient(), a.ua, dir, rec.URL, key)
	if err != nil {
		return nil, a.mapErr("directory", err, &a.transport.directory)
	}
	if rec.URL == "" {
		acct := legoacme.Account{Contact: a.cfg.Contact, TermsOfServiceAgreed: true}
		var reg legoacme.ExtendedAccount
		if e := a.cfg.EAB; e != nil {
			hmac, err := a.eabKey()
			if err != nil {
				return nil, err
			}
			reg, err = core.Accounts.NewEAB(ctx, acct, e.KeyID, hmac)
			if err != nil {
				return nil, a.mapErr("register the account", err, slot)
			}
		} else if reg, err = core.Accounts.New(ctx, acct); err != nil {
			return nil, a.mapErr("register the account", err, slot)
		}
		if reg.Location == "" {
			return nil, fmt.Errorf("acme %s: the CA registered the account without naming its URL", a.name)
		}
		if err := a.st.SetACMEAccountURL(ctx, a.name, dir, reg.Location); err != nil {
			return nil, fmt.Errorf("acme %s: record the account: %w", a.name, err)
		}
		a.log.Info("acme account registered", "directory", a.cfg.String())
	}
	a.core = core
	return core, nil
}

// newAccountKey makes an ECDSA P-256 key and stores it sealed unless
// another process stored one first; it returns the stored one.
func (a *Authority) newAccountKey(ctx context.Context) ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return a.st.SetACMEAccountKeyIfAbsent(ctx, a.name, a.cfg.Directory, a.kek.Seal(der, accountKeyAAD(a.name, a.cfg.Directory)))
}

// eabKey is the EAB HMAC key (base64url), inline or from its file
// (secretfile rules: the owner's alone, no symbolic link).
func (a *Authority) eabKey() (string, error) {
	e := a.cfg.EAB
	field, key := "acme.external_account_binding.hmac_key", strings.TrimSpace(e.HMACKey)
	if e.HMACKeyFile != "" {
		field += "_file"
		b, err := secretfile.Read(e.HMACKeyFile)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		key = strings.TrimSpace(string(b))
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(key, "="))
	if err != nil || len(raw) < 16 {
		return "", fmt.Errorf("%s: want the CA's HMAC key in base64url, at least 16 bytes", field)
	}
	return key, nil
}

// AccountURL is the CA's URL of certflow's account (its kid), registering
// the account if it is not yet.
func (a *Authority) AccountURL(ctx context.Context) (string, error) {
	core, err := a.client(ctx)
	if err != nil {
		return "", err
	}
	return core.GetKID(), nil
}

// forgetLostAccount reports whether err is the CA saying it does not know
// the account; if so, it forgets the account's URL (here and in Redis) so
// that the next exchange registers the same key again. Processes doing
// so at once converge: registering one key gives one account.
func (a *Authority) forgetLostAccount(ctx context.Context, err error) bool {
	p, ok := errors.AsType[*ca.Problem](err)
	if !ok || p.Type != legoacme.AccountDoesNotExistErrorType {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.core = nil
	if err := a.st.SetACMEAccountURL(ctx, a.name, a.cfg.Directory, ""); err != nil {
		a.log.Warn("acme account: could not forget the lost account", "err", err)
	}
	a.log.Warn("acme account unknown to the CA: registering again", "directory", a.cfg.String())
	return true
}

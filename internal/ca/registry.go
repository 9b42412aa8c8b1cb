package ca

import (
	"fmt"
	"maps"
	"strings"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
)

// Registry holds the configured authorities by logical name.
type Registry struct {
	byName map[string]Authority
}

// Get returns the authority with the given logical name (case-insensitive).
func (r *Registry) Get(name string) (Authority, bool) {
	a, ok := r.byName[strings.ToLower(name)]
	return a, ok
}

// NewRegistry holds the given authorities by their names (the
// throwaway CAs of a dry run, internal/dryrun).
func NewRegistry(auths ...Authority) *Registry {
	reg := &Registry{byName: make(map[string]Authority, len(auths))}
	for _, a := range auths {
		reg.byName[strings.ToLower(a.Name())] = a
	}
	return reg
}

// OpenAll opens every configured CA, creating built-in hierarchies that do
// not exist yet when create is set. created lists the names it made. The
// built-in CAs use the hand-built leaf encoder as cfg's speed.leaf_encoder
// says; opts come after that.
func OpenAll(cfg *config.Config, kek *pki.KEK, create bool, opts ...Option) (reg *Registry, created []string, err error) {
	opts = append([]Option{LeafEncoder(cfg.Speed.LeafEncoder)}, opts...)
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	reg = &Registry{byName: make(map[string]Authority, len(cfg.CAs))}
	for i := range cfg.CAs {
		c := &cfg.CAs[i]
		if open, ok := o.external[c.Type]; ok {
			a, err := open(c)
			if err != nil {
				return nil, nil, fmt.Errorf("certificate authority %s: %w", c.Name, err)
			}
			reg.byName[strings.ToLower(c.Name)] = a
			continue
		}
		switch c.Type {
		case config.CATypeBuiltin:
			b, made, err := OpenBuiltin(cfg.DataDir, c.Name, c.KeyType, kek, create, opts...)
			if err != nil {
				return nil, nil, err
			}
			if made {
				created = append(created, c.Name)
			}
			reg.byName[strings.ToLower(c.Name)] = b
		case config.CATypeACME:
			// Opened by the External opener its callers pass (the
			// worker); `certflow ca init` has nothing to create for it.
		default:
			return nil, nil, fmt.Errorf("certificate authority %s: unsupported type %q", c.Name, c.Type)
		}
	}
	reg.shareCANames()
	return reg, created, nil
}

// shareCANames makes every built-in CA refuse the subjects of all the
// registry's CAs, not only its own: a leaf named as another CA would pass
// for it where chains are built by name.
func (r *Registry) shareCANames() {
	all := map[string]bool{}
	for _, a := range r.byName {
		if b, ok := a.(*Builtin); ok {
			maps.Copy(all, b.caNames)
		}
	}
	for _, a := range r.byName {
		if b, ok := a.(*Builtin); ok {
			b.caNames = all
		}
	}
}

// IsCASubject reports whether a subject (DER) names one of the
// registry's CAs (a root or an issuing CA), compared as pki.NameKey does; a
// subject that does not parse counts as one. No CA issues a leaf so named.
func (r *Registry) IsCASubject(subject []byte) bool {
	key, err := pki.NameKey(subject)
	if err != nil {
		return true
	}
	for _, a := range r.byName {
		if b, ok := a.(*Builtin); ok && b.caNames[key] {
			return true
		}
	}
	return false
}

// All returns the authorities, in no particular order.
func (r *Registry) All() []Authority {
	out := make([]Authority, 0, len(r.byName))
	for _, a := range r.byName {
		out = append(out, a)
	}
	return out
}

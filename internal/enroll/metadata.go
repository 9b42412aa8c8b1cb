package enroll

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
)

// UpdateMetadata is PUT /Certificates/Metadata: it sets (a value) or
// clears (an empty string or null) the named metadata fields of
// certificate Id; see editMetadata.
func (s *Service) UpdateMetadata(ctx context.Context, caller *Caller, body *keyfactor.MetadataUpdateRequest) error {
	switch {
	case body.Id == nil:
		return badField("Id", "required: the id of the certificate whose metadata to change")
	case *body.Id <= 0:
		return badField("Id", "want a positive certificate id, got %d", *body.Id)
	}
	edit, err := s.checkMetadataEdit(body.Metadata, nil)
	if err != nil {
		return err
	}
	_, err = s.editMetadata(ctx, caller, []int64{*body.Id}, func(int) string { return "Id" }, edit)
	return err
}

// UpdateMetadataAll is PUT /Certificates/Metadata/All: one edit, as
// UpdateMetadata's, of every certificate in CertificateIds (at most
// maxBatch). Keyfactor's Query, which names the certificates by a search
// instead, is refused for now.
func (s *Service) UpdateMetadataAll(ctx context.Context, caller *Caller, body *keyfactor.MetadataAllUpdateRequest) error {
	if body.Query != nil && strings.TrimSpace(*body.Query) != "" {
		return badField("Query", "not supported yet: name the certificates in CertificateIds")
	}
	if err := checkCertificateIds(body.CertificateIds); err != nil {
		return err
	}
	in, keep, err := metadataAllValues(body.Metadata)
	if err != nil {
		return err
	}
	edit, err := s.checkMetadataEdit(in, keep)
	if err != nil {
		return err
	}
	_, err = s.editMetadata(ctx, caller, body.CertificateIds, func(i int) string { return fmt.Sprintf("CertificateIds[%d]", i) }, edit)
	return err
}

// metadataEdit is a checked edit of certificates' metadata.
type metadataEdit struct {
	// values are the fields to set, by their configured spelling, to
	// their normalized value; "" clears the field.
	values map[string]string
	// keep are the fields left as they are on a certificate that has a
	// value for them (Keyfactor's OverwriteExisting false).
	keep map[string]bool
}

// apply makes the edit on r: a field set or cleared goes into
// Instance.Metadata, over the request's value and the workflow's (an
// empty value there clears the field: store.Request.Metadata). It
// reports whether anything changed.
func (e *metadataEdit) apply(r *store.Request) bool {
	current := r.Metadata()
	changed := false
	for _, name := range slices.Sorted(maps.Keys(e.values)) {
		v, was := e.values[name], current[name]
		if was == v || (was != "" && e.keep[name]) {
			continue
		}
		if r.Instance.Metadata == nil {
			r.Instance.Metadata = make(map[string]string, len(e.values))
		}
		r.Instance.Metadata[name] = v
		changed = true
	}
	return changed
}

// checkMetadataEdit checks the Metadata of an edit: 1 to maxMapEntries
// fields, each read as a submit reads it (metadataEntry: a configured
// field when there are any, a JSON scalar) and its value held to the
// field's type (checkMetadataValue), with the field's own rules: a
// template's overrides are for its enrollments. An empty string or null
// clears the field. A field that workflows set (Set.MetadataNames) is
// refused, set or cleared: what a workflow records is nobody's edit.
// Hidden fields (never set at enrollment) may be edited. keep names the
// fields (as given) that are not to overwrite a value.
func (s *Service) checkMetadataEdit(in map[string]any, keep map[string]bool) (*metadataEdit, error) {
	return s.checkMetadataEditBy(in, keep, false)
}

// checkMetadataEditBy is checkMetadataEdit; byWorkflow lets the edit set
// the fields workflows set (an event-triggered definition's metadata
// step: Automation.SetMetadata).
func (s *Service) checkMetadataEditBy(in map[string]any, keep map[string]bool, byWorkflow bool) (*metadataEdit, error) {
	switch {
	case len(in) == 0:
		return nil, badField("Metadata", "required: at least one field to set (a value) or clear (an empty string)")
	case len(in) > maxMapEntries:
		return nil, badField("Metadata", "more than %d fields", maxMapEntries)
	}
	e := &metadataEdit{values: make(map[string]string, len(in)), keep: map[string]bool{}}
	for _, name := range slices.Sorted(maps.Keys(in)) { // the same field named every time
		if reserved := s.reservedName(strings.TrimSpace(name)); reserved != "" && !byWorkflow {
			return nil, badField("Metadata."+reserved, "set by the workflow; an edit may not set or clear it")
		}
		v := in[name]
		if v == nil {
			v = "" // cleared, as an empty string
		}
		key, global, text, _, err := s.metadataEntry(name, v)
		if err != nil {
			return nil, err
		}
		if _, twice := e.values[key]; twice {
			return nil, badField("Metadata."+key, "given twice (field names ignore case)")
		}
		if text != "" && global != nil {
			if text, err = checkMetadataValue(global, text); err != nil {
				return nil, err
			}
		}
		e.values[key] = text
		if keep[name] {
			e.keep[key] = true
		}
	}
	return e, nil
}

// metadataAllValues reads the Metadata of PUT /Certificates/Metadata/All:
// an object of field → value, or Keyfactor's list of {MetadataName,
// Value, OverwriteExisting}. It returns the values by name, and the names
// whose OverwriteExisting is false.
func metadataAllValues(raw json.RawMessage) (map[string]any, map[string]bool, error) {
	raw = bytes.TrimSpace(raw)
	const want = "want an object of field names to values, or a list of {MetadataName, Value, OverwriteExisting}"
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil, nil, badField("Metadata", "required: at least one field to set (a value) or clear (an empty string)")
	case raw[0] == '{':
		var in map[string]any
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, nil, badField("Metadata", "%s", want)
		}
		return in, nil, nil
	case raw[0] != '[':
		return nil, nil, badField("Metadata", "%s", want)
	}
	var list []keyfactor.MetadataSingleUpdateRequest
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil, badField("Metadata", "%s", want)
	}
	if len(list) > maxMapEntries {
		return nil, nil, badField("Metadata", "more than %d fields", maxMapEntries)
	}
	in, keep := make(map[string]any, len(list)), map[string]bool{}
	for i, m := range list {
		switch _, twice := in[m.MetadataName]; {
		case m.MetadataName == "":
			return nil, nil, badField(fmt.Sprintf("Metadata[%d].MetadataName", i), "required")
		case twice:
			return nil, nil, badField("Metadata."+m.MetadataName, "given twice")
		}
		in[m.MetadataName] = m.Value
		if !m.OverwriteExisting {
			keep[m.MetadataName] = true
		}
	}
	return in, keep, nil
}

// editMetadata makes edit on the certificates ids, all or nothing: every
// id must name an issued certificate the caller sees (else NotFound, as
// for one that does not exist) and the caller must be an administrator
// (else Forbidden), before anything is written. Each certificate's record
// is then changed by compare-and-set (store.Update), so a workflow
// checkpoint written meanwhile is kept (and one that follows finds its
// record changed and runs again from the last). A record the edit leaves
// as it was, as read or as found when writing, is not written. Writing goes on when the client leaves; should Redis
// fail part-way, the certificates before are edited and the error says
// so in the log: the edit can be sent again, to the same result. field
// names ids[i] in refusals. It returns how many certificates it changed.
func (s *Service) editMetadata(ctx context.Context, caller *Caller, ids []int64, field func(i int) string, edit *metadataEdit) (int, error) {
	lookup, cancel := context.WithTimeout(ctx, 2*s.cfg.API.RedisTimeout)
	defer cancel()
	rs, err := s.store.GetMany(lookup, ids)
	if err != nil {
		return 0, err
	}
	byID := make(map[int64]*store.Request, len(rs))
	for _, q := range rs {
		byID[q.ID] = q
	}
	todo := make([]int64, 0, len(ids))
	seen := make(map[int64]bool, len(ids))
	for i, id := range ids {
		q := byID[id]
		var c *store.Certificate
		if q != nil {
			if c, err = q.Certificate(); err != nil {
				return 0, err
			}
		}
		switch {
		case c == nil || !CertificateVisible(q, caller):
			return 0, fieldError(NotFound, keyfactor.CodeNotFound, field(i), "certificate %d: not found", id)
		case !caller.Has(config.RoleAdmin):
			return 0, fieldError(Forbidden, keyfactor.CodeForbidden, field(i), "%s may not change the metadata of certificate %d: only an administrator may", caller.Name, id)
		}
		if !seen[id] && edit.apply(q) { // named twice: edited once
			todo = append(todo, id)
		}
		seen[id] = true
	}
	write := context.WithoutCancel(ctx)
	written := 0
	for n, id := range todo {
		wctx, cancel := context.WithTimeout(write, 2*s.cfg.API.RedisTimeout)
		_, err := s.store.Update(wctx, id, func(r *store.Request) error {
			if !edit.apply(r) {
				return errUnchanged
			}
			return nil
		})
		cancel()
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err != nil && n > 0 {
			s.log.Warn("a metadata edit was written in part", "written", n, "of", len(todo), "failed", id, "err", err)
		}
		switch {
		case errors.Is(err, store.ErrNotFound): // deleted since it was read
			return 0, fieldError(NotFound, keyfactor.CodeNotFound, field(slices.Index(ids, id)), "certificate %d: not found", id)
		case errors.Is(err, store.ErrConflict):
			return 0, fieldError(Conflict, keyfactor.CodeConflict, field(slices.Index(ids, id)), "certificate %d changed on every try; send the edit again", id)
		case err != nil:
			return 0, err
		}
		written++
	}
	s.log.Info("certificate metadata changed", "certificates", written, "fields", slices.Sorted(maps.Keys(edit.values)), "by", caller.Name)
	return written, nil
}

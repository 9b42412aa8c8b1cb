package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/google/uuid"
)

// InstanceID is the workflow instance id (Keyfactor's WorkflowInstanceId,
// a GUID) of a request. It is derived from the request id, so no index is
// needed to find a request from its instance: a version-8 UUID whose first
// six bytes name this deployment (its key prefix) and whose last eight
// carry the request id.
func (s *Store) InstanceID(requestID int64) string {
	var u uuid.UUID
	ns := sha256.Sum256([]byte(s.keys.prefix))
	copy(u[:8], ns[:8])
	u[6] = 0x80 | u[6]&0x0f // version 8: custom
	binary.BigEndian.PutUint64(u[8:], uint64(requestID))
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant (request ids stay below 2^62)
	return u.String()
}

// RequestIDOfInstance reverses InstanceID; an id this deployment did not
// make is ErrNotFound.
func (s *Store) RequestIDOfInstance(instanceID string) (int64, error) {
	u, err := uuid.Parse(instanceID)
	if err != nil {
		return 0, fmt.Errorf("instance %q: %w", instanceID, ErrNotFound)
	}
	id := int64(binary.BigEndian.Uint64(u[8:]) &^ (0xc0 << 56))
	if id <= 0 || s.InstanceID(id) != u.String() {
		return 0, fmt.Errorf("instance %q: %w", instanceID, ErrNotFound)
	}
	return id, nil
}

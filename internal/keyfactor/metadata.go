package keyfactor

import "encoding/json"

// MetadataUpdateRequest is the body of PUT /Certificates/Metadata: one
// certificate's metadata fields to set (a value) or clear (an empty
// string or null). Fields not named are left as they are.
type MetadataUpdateRequest struct {
	Id           *int64         `json:"Id"`
	Metadata     map[string]any `json:"Metadata"`
	CollectionId *int64         `json:"CollectionId"`
}

// MetadataAllUpdateRequest is the body of PUT /Certificates/Metadata/All:
// one edit for every certificate in CertificateIds. Metadata is an object
// as in MetadataUpdateRequest, or Keyfactor's list of
// MetadataSingleUpdateRequest. Query (Keyfactor's other way to name the
// certificates) is not served yet.
type MetadataAllUpdateRequest struct {
	Query          *string         `json:"Query"`
	CertificateIds []int64         `json:"CertificateIds"`
	Metadata       json.RawMessage `json:"Metadata"`
	CollectionId   *int64          `json:"CollectionId"`
}

// MetadataSingleUpdateRequest is one entry of the list form of
// MetadataAllUpdateRequest's Metadata: MetadataName is set to Value (an
// empty one clears it), on a certificate that has a value for it already
// only when OverwriteExisting.
type MetadataSingleUpdateRequest struct {
	MetadataName      string `json:"MetadataName"`
	Value             any    `json:"Value"`
	OverwriteExisting bool   `json:"OverwriteExisting"`
}

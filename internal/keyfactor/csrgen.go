package keyfactor

import (
	"encoding/pem"
	"time"
)

// CSRGenerationRequest is the body of POST /CSRGeneration/Generate, with
// Keyfactor's field names.
type CSRGenerationRequest struct {
	Subject   string              `json:"Subject"`
	KeyType   string              `json:"KeyType"`
	KeyLength int                 `json:"KeyLength"`
	Curve     string              `json:"Curve"`
	Template  string              `json:"Template"`
	SANs      map[string][]string `json:"SANs"`
}

// CSRContents is Keyfactor's answer to POST /CSRGeneration/Generate
// ("CSR"); CSRText (the same PEM) and Id are certflow's, so that a client
// can name the pending CSR without listing them all.
type CSRContents struct {
	CSR     string `json:"CSR"`
	CSRText string `json:"CSRText"`
	Id      int64  `json:"Id"`
}

// PendingCSRResponse is one entry of GET /CSRGeneration/Pending, as
// Keyfactor's (Id, CSR, RequestTime, Subject as its parts), with certflow's
// Requester, Template and KeyType.
type PendingCSRResponse struct {
	Id          int64     `json:"Id"`
	CSR         string    `json:"CSR"`
	RequestTime time.Time `json:"RequestTime"`
	Subject     []string  `json:"Subject"`
	Requester   string    `json:"Requester"`
	Template    string    `json:"Template,omitempty"`
	KeyType     string    `json:"KeyType"`
}

// CSRGenerationResponseModel is Keyfactor's answer to GET
// /CSRGeneration/Pending/{id}: CSRFilePath (certflow keeps no files: null)
// and CSRText, with certflow's Id and RequestTime.
type CSRGenerationResponseModel struct {
	CSRFilePath *string   `json:"CSRFilePath"`
	CSRText     string    `json:"CSRText"`
	Id          int64     `json:"Id"`
	RequestTime time.Time `json:"RequestTime"`
}

// CSRText is a CSR as Keyfactor's answers carry it: PEM.
func CSRText(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

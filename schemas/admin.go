package schemas

// Operations of a ProfileRequest.
const (
	ProfileList   = "list"
	ProfilePut    = "put"
	ProfileDelete = "delete"
)

// ProfileRequest is an administrator's request on SubjectBrokerProfile.
type ProfileRequest struct {
	// Op is ProfileList, ProfilePut or ProfileDelete.
	Op string `json:"op"`
	// Profile is the profile to store (put), replacing one with its id.
	Profile *Profile `json:"profile,omitempty"`
	// ID is the client to delete (delete).
	ID string `json:"id,omitempty"`
}

// ProfileReply answers a ProfileRequest; errors travel as micro service
// errors with their Code.
type ProfileReply struct {
	Op string `json:"op"`
	// ID is the client stored or deleted.
	ID string `json:"id,omitempty"`
	// Profiles are every profile, sorted by id (list).
	Profiles []ProfileSummary `json:"profiles,omitempty"`
}

// ProfileSummary is a profile without its secrets: it names what it shows
// rather than hiding what it must not, so a credential field added to
// Profile later stays out of it.
type ProfileSummary struct {
	ID           string            `json:"id"`
	Name         string            `json:"name,omitempty"`
	Addresses    map[string]string `json:"addresses,omitempty"`
	Prefer       []string          `json:"prefer,omitempty"`
	SMPPSystemID string            `json:"smpp_system_id,omitempty"`
	SMTPUsername string            `json:"smtp_username,omitempty"`
	Receipts     *ReceiptPrefs     `json:"receipts,omitempty"`
	Quota        int64             `json:"quota,omitempty"`
	Options      map[string]string `json:"options,omitempty"`
	Operator     bool              `json:"operator,omitempty"`
	Fallback     *Fallback         `json:"fallback,omitempty"`
}

// Summary returns p without its secrets.
func (p *Profile) Summary() ProfileSummary {
	s := ProfileSummary{ID: p.ID, Name: p.Name, Addresses: p.Addresses, Prefer: p.Prefer,
		Receipts: p.Receipts, Quota: p.Quota, Options: p.Options, Operator: p.Operator, Fallback: p.Fallback}
	if p.SMPP != nil {
		s.SMPPSystemID = p.SMPP.SystemID
	}
	if p.SMTP != nil {
		s.SMTPUsername = p.SMTP.Username
	}
	return s
}

package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Group messages (PROTOCOL.md §6.3, "Group messages"; docs/ROUTING.md,
// "Groups"): a message to several recipients is one ordinary transaction
// per recipient, whose message ids derive from the group's id.
const (
	// MaxGroupRecipients is the most recipients of one group message, and
	// the most members of a named group in a profile.
	MaxGroupRecipients = 100
	// MaxGroups is the most named groups of one profile.
	MaxGroups = 100
	// MetaGroup is the IMI meta key that carries the group id on each of
	// its transactions; status events echo it (§13.9).
	MetaGroup = "group"
	// GroupPrefix marks a named group of the sender's profile where a
	// recipient is written: "group:team".
	GroupPrefix = "group:"
	// groupIDLabel is the purpose label of GroupMemberID.
	groupIDLabel = "uims-group/1"
)

// GroupMemberID returns the message id of the transaction of group
// message groupID for recipient to (as written, after normalisation):
// the first 32 hex digits of SHA-256("uims-group/1" ‖ groupID ‖ 0x00 ‖
// to), groupID in its 32 lowercase hex digits. A retry of the group
// message reuses the group id and so every member's id.
func GroupMemberID(groupID, to string) string {
	h := sha256.New()
	h.Write([]byte(groupIDLabel))
	h.Write([]byte(groupID))
	h.Write([]byte{0})
	h.Write([]byte(to))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// ValidGroupName reports whether s is a group name:
// [a-z0-9][a-z0-9._-]{0,63}.
func ValidGroupName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidRecipient reports whether to may be written as a recipient, as
// IMI.To (§13.3): 1 to 320 bytes of one line of UTF-8, without
// surrounding spaces or tabs.
func ValidRecipient(to string) bool {
	return to != "" && to == strings.Trim(to, " \t\f") && cleanLine(to, 320)
}

// ValidateGroups checks a profile's named groups: at most MaxGroups,
// names by ValidGroupName, 1 to MaxGroupRecipients members each, every
// member a recipient by ValidRecipient that is not itself a group (groups
// do not nest).
func ValidateGroups(g map[string][]string) error {
	if len(g) > MaxGroups {
		return fmt.Errorf("schemas: %d groups, at most %d", len(g), MaxGroups)
	}
	names := make([]string, 0, len(g))
	for name := range g {
		names = append(names, name)
	}
	slices.Sort(names) // the same error for the same profile
	for _, name := range names {
		members := g[name]
		switch {
		case !ValidGroupName(name):
			return fmt.Errorf("schemas: group name %q: [a-z0-9][a-z0-9._-]{0,63}", name)
		case len(members) == 0:
			return fmt.Errorf("schemas: group %q has no members", name)
		case len(members) > MaxGroupRecipients:
			return fmt.Errorf("schemas: group %q has %d members, at most %d", name, len(members), MaxGroupRecipients)
		}
		for _, m := range members {
			if !ValidRecipient(m) {
				return fmt.Errorf("schemas: group %q: member %q is not a recipient (1 to 320 bytes of one line, no surrounding spaces)", name, m)
			}
			if strings.HasPrefix(m, GroupPrefix) {
				return fmt.Errorf("schemas: group %q: member %q is a group; groups do not nest", name, m)
			}
		}
	}
	return nil
}

// Aggregate statuses of a group message (GroupAggregate).
const (
	GroupDelivered = "delivered" // every recipient delivered (or read)
	GroupFailed    = "failed"    // every recipient failed
	GroupPartial   = "partial"   // every recipient has its outcome, some failed
	GroupPending   = "pending"   // some recipient has no outcome yet
)

// GroupAggregate returns the aggregate status of a group message from
// its recipients' states: GroupDelivered when all are delivered or read,
// GroupFailed when all failed, GroupPartial when all are terminal and some
// failed, GroupPending otherwise (and for none).
func GroupAggregate(states []string) string {
	if len(states) == 0 {
		return GroupPending
	}
	failed := 0
	for _, s := range states {
		if !Terminal(s) {
			return GroupPending
		}
		if s == StatusFailed {
			failed++
		}
	}
	switch failed {
	case 0:
		return GroupDelivered
	case len(states):
		return GroupFailed
	}
	return GroupPartial
}

// Package bundle reads and writes a party bundle: the folder `uims party
// add` writes, holding what one party's machines need to join the fabric
// and nothing of anyone else's (PROTOCOL.md §4.3): bundle.json (who the
// party is and where the fabric is), keys.json (its own MIAP key entries,
// §3.3) and NAME.creds (its NATS identity).
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/uims/uims/miap"
)

// Meta is bundle.json.
type Meta struct {
	Party       string   `json:"party"`
	Role        string   `json:"role"`
	Media       []string `json:"media,omitempty"`
	NATSURL     string   `json:"nats_url"`
	InboxPrefix string   `json:"inbox_prefix"`
}

// Bundle is a party bundle read from its folder.
type Bundle struct {
	Meta
	// Keys are the party's MIAP key entries.
	Keys *miap.KeyFile
	// CredsFile is the path of the NATS credentials file.
	CredsFile string
}

// Keyring returns the party's keyring.
func (b *Bundle) Keyring() (*miap.Keyring, error) { return b.Keys.Keyring() }

// Write writes dir/bundle.json, dir/keys.json and dir/<party>.creds, each
// mode 0600.
func Write(dir string, m Meta, keys *miap.KeyFile, creds []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	meta, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.json"), append(meta, '\n'), 0o600); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := miap.WriteKeyFile(filepath.Join(dir, "keys.json"), keys); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, m.Party+".creds"), creds, 0o600); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// Read reads the bundle in dir and checks that it is whole: a valid party
// id, a key of that party, and its credentials file.
func Read(dir string) (*Bundle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "bundle.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	var b Bundle
	if err := json.Unmarshal(raw, &b.Meta); err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", filepath.Join(dir, "bundle.json"), err)
	}
	if !miap.ValidName(b.Party) {
		return nil, fmt.Errorf("bundle: invalid party id %q in %s", b.Party, dir)
	}
	if b.Keys, err = miap.ReadKeyFile(filepath.Join(dir, "keys.json")); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	kr, err := b.Keys.Keyring()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if !kr.Has(b.Party) {
		return nil, fmt.Errorf("bundle: keys.json holds no key of party %q", b.Party)
	}
	b.CredsFile = filepath.Join(dir, b.Party+".creds")
	if _, err := os.Stat(b.CredsFile); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle: no NATS credentials %s", b.CredsFile)
		}
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return &b, nil
}

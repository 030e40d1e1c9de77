package system

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/uims/uims/broker"
)

// SavedProfiles is the file, in the data folder, where `uims run` with the
// embedded (not durable) store keeps the profiles as `uims profile` changed
// them, and loads them from at the next start unless UIMS_PROFILES names
// another file.
//
// The broker saves it through broker.Config.OnProfilesChanged, after the
// change and before it answers the administrator: when `uims profile put`
// returns, the change is on disk. (A subscriber to uims.profiles.changed
// would save later, so a stop right after the answer could lose it; and
// the hook exists only in `uims run`, where there is one broker and the
// store is this process's own.)
const SavedProfiles = "profiles.yaml"

// SaveProfiles writes every profile in the store to path in the format of a
// profile file (UIMS_PROFILES, broker.ReadProfiles), secrets included, so
// with mode 0600, atomically.
func SaveProfiles(ctx context.Context, rdb redis.UniversalClient, path string) error {
	ps, err := broker.NewProfiles(rdb, nil).List(ctx)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(broker.ProfileFile{Clients: ps})
	if err != nil {
		return fmt.Errorf("system: profiles: %w", err)
	}
	b = append([]byte("# written by uims run when profiles change (uims profile); loaded at its start\n"), b...)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("system: save profiles: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("system: save profiles: %w", err)
	}
	return nil
}

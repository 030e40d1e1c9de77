package broker

import (
	"strings"
	"testing"
)

// Quiet hours in a profile file: read, and each bad field refused with
// a reason naming it (docs/ROUTING.md, "Holds").
func TestProfileQuietHoursChecked(t *testing.T) {
	ps, err := ReadProfiles(strings.NewReader(`clients:
  - id: bob
    addresses: {sms: "+15550100", web: bob}
    prefer: [sms, web]
    time_zone: Europe/Paris
    quiet_hours:
      sms: "22:00-07:00"
      "*": "03:00-04:00"
    quiet: next
    urgent_from: [carol]
    groups:
      team: [alice, carol]
`))
	if err != nil || ps[0].QuietHours["sms"] != "22:00-07:00" || ps[0].Quiet != "next" {
		t.Fatal(err, ps)
	}
	for _, bad := range []string{"time_zone: Mars/Olympus", "quiet_hours: {sms: \"25:00-07:00\"}", "quiet: later", "quiet_hours: {sms: \"00:00-24:00\"}"} {
		if _, err := ReadProfiles(strings.NewReader("clients:\n  - id: bob\n    " + bad + "\n")); err == nil {
			t.Errorf("%s accepted", bad)
		} else {
			t.Logf("refused: %v", err)
		}
	}
}

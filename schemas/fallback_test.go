package schemas_test

import (
	"testing"
	"time"

	"github.com/uims/uims/schemas"
)

func TestFallbackValidate(t *testing.T) {
	good := []*schemas.Fallback{nil, {}, {On: []string{"permanent"}}, {On: []string{"none"}},
		{On: []string{"deadline", "UNKNOWN_RECIPIENT", "REJECTED"}, After: map[string]string{"sms": "2m", "email": "1h30m"}, LastResort: "web"}}
	for _, f := range good {
		if err := f.Validate(); err != nil {
			t.Errorf("%+v: %v", f, err)
		}
	}
	bad := map[string]*schemas.Fallback{
		"unknown word":         {On: []string{"sometimes"}},
		"OK is no failure":     {On: []string{"OK"}},
		"none with another":    {On: []string{"none", "permanent"}},
		"no unit":              {After: map[string]string{"sms": "120"}},
		"too short":            {After: map[string]string{"sms": "500ms"}},
		"longer than 7 days":   {After: map[string]string{"sms": "169h"}},
		"medium with a space":  {After: map[string]string{"s ms": "2m"}},
		"last resort upper":    {LastResort: "Web"},
		"last resort too long": {LastResort: "a234567890123456789012345678901234"},
	}
	for why, f := range bad {
		if f.Validate() == nil {
			t.Errorf("%s: %+v accepted", why, f)
		}
	}
}

func TestFallbackMoves(t *testing.T) {
	var def *schemas.Fallback
	cases := []struct {
		f        *schemas.Fallback
		code     string
		deadline bool
		want     bool
	}{
		{def, "UNKNOWN_RECIPIENT", false, true},
		{def, "", false, true},         // a failure without a code is a failure
		{def, "WHATEVER", false, true}, // so is one with a code we do not know
		{def, "BUSY", false, false},    // a retryable code is not permanent
		{def, "EXPIRED", true, true},   // the deadline
		{&schemas.Fallback{On: []string{"none"}}, "UNKNOWN_RECIPIENT", false, false},
		{&schemas.Fallback{On: []string{"none"}}, "EXPIRED", true, false},
		{&schemas.Fallback{On: []string{"deadline"}}, "UNKNOWN_RECIPIENT", false, false},
		{&schemas.Fallback{On: []string{"deadline"}}, "EXPIRED", true, true},
		{&schemas.Fallback{On: []string{"REJECTED"}}, "REJECTED", false, true},
		{&schemas.Fallback{On: []string{"REJECTED"}}, "UNKNOWN_RECIPIENT", false, false},
		{&schemas.Fallback{On: []string{"REJECTED"}}, "EXPIRED", true, false},
		{&schemas.Fallback{On: []string{"EXPIRED"}}, "EXPIRED", true, true},
	}
	for _, c := range cases {
		if got := c.f.Moves(c.code, c.deadline); got != c.want {
			t.Errorf("%+v Moves(%q, deadline %v) = %v", c.f, c.code, c.deadline, got)
		}
	}
	f := &schemas.Fallback{After: map[string]string{"sms": "2m"}}
	if f.AfterFor("sms") != 2*time.Minute || f.AfterFor("email") != 0 || def.AfterFor("sms") != 0 {
		t.Error("AfterFor")
	}
}

package assurance_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sessiond/sessiond/internal/assurance"
)

func TestParseRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level, age []string
		want       assurance.Requirement
		err        string // the parameter the error starts with; "" for none
	}{
		{nil, nil, assurance.Requirement{}, ""},
		{[]string{"0"}, []string{"0"}, assurance.Requirement{}, ""},
		{[]string{"2"}, nil, assurance.Requirement{MinLevel: 2}, ""},
		{nil, []string{"300"}, assurance.Requirement{MaxAuthAge: 5 * time.Minute}, ""},
		{[]string{"3"}, []string{"15m"}, assurance.Requirement{MinLevel: 3, MaxAuthAge: 15 * time.Minute}, ""},
		{[]string{""}, nil, assurance.Requirement{}, "min_assurance_level is empty"},
		{[]string{"2", "2"}, nil, assurance.Requirement{}, "min_assurance_level given 2 times"},
		{[]string{"4"}, nil, assurance.Requirement{}, "min_assurance_level"},
		{[]string{"2"}, []string{""}, assurance.Requirement{}, "max_auth_age is empty"},
		{nil, []string{"5m", "1h"}, assurance.Requirement{}, "max_auth_age given 2 times"},
		{nil, []string{"-1s"}, assurance.Requirement{}, "max_auth_age"},
	} {
		got, err := assurance.ParseRoute(tc.level, tc.age)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseRoute(%q, %q) = %+v, %v; want %+v", tc.level, tc.age, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err) || !got.IsZero()):
			t.Errorf("ParseRoute(%q, %q) = %+v, %v; want an error starting %q", tc.level, tc.age, got, err, tc.err)
		}
	}
}

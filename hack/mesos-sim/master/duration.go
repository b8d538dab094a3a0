package master

import (
	"strconv"
	"time"
)

// FormatDuration prints a duration the way stout's Duration does ("5secs",
// "15mins", "100ms"), which is what Mesos puts in flags and in the executor
// environment and what mesos-go's time.ParseDuration reads.
func FormatDuration(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	ns := int64(d)
	const (
		us   = int64(time.Microsecond)
		ms   = int64(time.Millisecond)
		sec  = int64(time.Second)
		min  = int64(time.Minute)
		hr   = int64(time.Hour)
		day  = 24 * hr
		week = 7 * day
	)
	f := func(v int64, unit int64, name string) string {
		return neg + strconv.FormatFloat(float64(v)/float64(unit), 'f', -1, 64) + name
	}
	switch {
	case ns < us:
		return f(ns, 1, "ns")
	case ns < ms:
		if ns%us != 0 {
			return f(ns, 1, "ns")
		}
		return f(ns, us, "us")
	case ns < sec:
		if ns%ms != 0 && ns%us == 0 {
			return f(ns, us, "us")
		}
		return f(ns, ms, "ms")
	case ns < min:
		if ns%sec != 0 && ns%ms == 0 {
			return f(ns, ms, "ms")
		}
		return f(ns, sec, "secs")
	case ns < hr:
		if ns%min != 0 && ns%sec == 0 {
			return f(ns, sec, "secs")
		}
		return f(ns, min, "mins")
	case ns < day:
		if ns%hr != 0 && ns%min == 0 {
			return f(ns, min, "mins")
		}
		return f(ns, hr, "hrs")
	case ns < week:
		if ns%day != 0 && ns%hr == 0 {
			return f(ns, hr, "hrs")
		}
		return f(ns, day, "days")
	}
	if ns%week != 0 && ns%day == 0 {
		return f(ns, day, "days")
	}
	return f(ns, week, "weeks")
}

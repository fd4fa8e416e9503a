// Added by collect-jobs' scripts/build-ferretdb (not part of FerretDB).
//
// FerretDB 1.24's SQLite backend indexes _id on the expression
// _ferretdb_sjson->"_id" (metadata.indexesCreate) but filtered on
// _ferretdb_sjson->'$._id', which SQLite's planner does not match to that
// index: every find, update, delete, findAndModify and count by _id scanned
// the table. patch.py makes metadata.IDColumn the index's own expression (so
// UpdateAll and DeleteAll, which write by _id, use the index) and routes
// Query's and Explain's filter pushdown through collectJobsIDQuery below.
//
// The SQL built here is only a pre-filter: every caller of Query (find,
// count, update, delete, findAndModify, aggregate, distinct) applies the
// whole filter again in Go to the documents it gets back. The SQL may
// therefore return more documents than match, never fewer: it must select
// every document whose _id can match the filter's _id condition.
//
// What the index holds: J = _ferretdb_sjson->"_id" is the JSON text of the
// _id exactly as sjson wrote it (SQLite keeps a string's escapes verbatim):
// a string is encoding/json's quoted form ("abc", with \" \\ \n \u003c
// \u2028 ... escapes), an ObjectID its quoted hex, an int32/int64 its
// decimal digits, a double Go's shortest form (an integral double below
// 2^53 in magnitude prints as the integer's digits; -0.0 as -0). J is TEXT
// and compared with BINARY collation (memcmp), as Go compares strings.
//
// Equality and $in: J = one of the encodings of the value (and of the
// values MongoDB deems equal to it: an int equals the double of the same
// value). Ranges with string bounds: a string range in MongoDB matches only
// strings. The quoted form of a string s orders like s itself except where
// the encoder escapes a character (its first byte becomes a backslash) or
// where s ends (the closing quote). So the range is the index range
// [L, U) over J, plus short "probe" ranges that catch exactly those strings
// whose escapes or end could order them outside [L, U); see stringRange.
// Every piece is one index range or lookup; the pieces are disjoint, and
// are sent as one compound SELECT (UNION ALL), each arm planned on its own,
// so SQLite uses the index whatever its statistics say about an OR.

package sqlite

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/types"
)

// collectJobsIDExpr is the expression of FerretDB's _id index, character for
// character: SQLite uses an expression index only for the same expression.
const collectJobsIDExpr = metadata.DefaultColumn + `->"_id"`

// collectJobsMaxArgs keeps a pushed-down query under SQLite's limit of
// 32,766 bound variables; a larger $in is not pushed down (the table is scanned).
const collectJobsMaxArgs = 30_000

// collectJobsArm is one arm of the pushed-down query: a WHERE clause and its arguments.
type collectJobsArm struct {
	where string
	args  []any
}

// collectJobsIDQuery returns the query to run for the given SELECT clause
// and filter, with its arguments: the SELECT clause alone when the filter
// has nothing to push down; otherwise one SELECT per arm, joined by UNION
// ALL (the arms select disjoint sets of rows). A compound query is only
// built when ordered is false (an ORDER BY would have to apply to the
// compound); with ordered set, a filter that needs more than one arm is not
// pushed down.
func collectJobsIDQuery(selectClause string, filter *types.Document, ordered bool) (string, []any) {
	arms := collectJobsIDArms(filter)
	if len(arms) == 0 || (ordered && len(arms) > 1) {
		return selectClause, nil
	}

	var n int
	for _, arm := range arms {
		n += len(arm.args)
	}

	if n > collectJobsMaxArgs {
		return selectClause, nil
	}

	parts := make([]string, len(arms))
	args := make([]any, 0, n)

	for i, arm := range arms {
		parts[i] = selectClause + ` WHERE ` + arm.where
		args = append(args, arm.args...)
	}

	return strings.Join(parts, ` UNION ALL `), args
}

// collectJobsIDArms returns the arms that together select every document
// whose _id can match the filter's top-level _id condition, or nil when
// there is none it can push down (no _id key, an _id condition on types it
// does not handle, a malformed filter: Go's filter reports those).
func collectJobsIDArms(filter *types.Document) []collectJobsArm {
	if filter == nil {
		return nil
	}

	var found int

	for _, k := range filter.Keys() {
		if k == "_id" {
			found++
		}
	}

	if found != 1 {
		return nil
	}

	v, _ := filter.Get("_id")

	cond, ok := v.(*types.Document)
	if !ok {
		return collectJobsEqual([]any{v})
	}

	keys := cond.Keys()
	if len(keys) == 0 || !strings.HasPrefix(keys[0], "$") {
		// an _id that is a document, compared as a whole
		return nil
	}

	// The operators are ANDed: any one of them alone gives a valid pre-filter.
	if cond.Has("$eq") {
		eq, _ := cond.Get("$eq")
		if arms := collectJobsEqual([]any{eq}); arms != nil {
			return arms
		}
	}

	if cond.Has("$in") {
		in, _ := cond.Get("$in")
		if arr, ok := in.(*types.Array); ok {
			values := make([]any, arr.Len())
			for i := range values {
				values[i], _ = arr.Get(i)
			}

			if arms := collectJobsEqual(values); arms != nil {
				return arms
			}
		}
	}

	var lower, upper *string

	for _, k := range keys {
		bound, _ := cond.Get(k)

		s, ok := bound.(string)
		if !ok {
			continue
		}

		switch k {
		case "$gt", "$gte":
			if lower == nil || s > *lower {
				lower = &s
			}
		case "$lt", "$lte":
			if upper == nil || s < *upper {
				upper = &s
			}
		}
	}

	if lower == nil && upper == nil {
		return nil
	}

	if lower != nil && upper != nil && *lower > *upper {
		// no string is in the range
		return []collectJobsArm{{where: `0`}}
	}

	return collectJobsStringRange(lower, upper)
}

// collectJobsEqual returns the one arm selecting every document whose _id
// equals one of the values, or nil if a value is of a type it does not handle.
func collectJobsEqual(values []any) []collectJobsArm {
	args := make([]any, 0, len(values))

	for _, v := range values {
		encoded, ok := collectJobsEncodings(v)
		if !ok {
			return nil
		}

		for _, e := range encoded {
			args = append(args, e)
		}
	}

	if len(args) == 0 {
		// $in: [] matches nothing
		return []collectJobsArm{{where: `0`}}
	}

	placeholders := strings.Repeat(", ?", len(args))[2:]

	return []collectJobsArm{{where: collectJobsIDExpr + ` IN (` + placeholders + `)`, args: args}}
}

// collectJobsEncodings returns every J of an _id that MongoDB deems equal to v.
func collectJobsEncodings(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}

		return []string{string(b)}, true
	case types.ObjectID:
		b, err := json.Marshal(hex.EncodeToString(v[:]))
		if err != nil {
			return nil, false
		}

		return []string{string(b)}, true
	case int32:
		return collectJobsIntEncodings(int64(v))
	case int64:
		return collectJobsIntEncodings(v)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1<<53 {
			return nil, false
		}

		if v == math.Trunc(v) {
			return collectJobsIntEncodings(int64(v))
		}

		// no integer equals it; a double prints as sjson printed it
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}

		return []string{string(b)}, true
	default:
		return nil, false
	}
}

// collectJobsIntEncodings returns the Js of a number equal to the integer i:
// int32, int64 and double alike print as its digits when |i| <= 2^53 (and a
// double -0.0 equals 0). Larger values are not pushed down.
func collectJobsIntEncodings(i int64) ([]string, bool) {
	if i > 1<<53 || i < -(1<<53) {
		return nil, false
	}

	if i == 0 {
		return []string{"0", "-0"}, true
	}

	return []string{strconv.FormatInt(i, 10)}, true
}

// collectJobsSafe reports whether encoding/json writes the byte c, in a
// string, as itself: printable ASCII but the quote, the backslash and the
// three characters it escapes for HTML.
func collectJobsSafe(c byte) bool {
	return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}

// collectJobsSafePrefix returns the longest prefix of s made of safe bytes.
func collectJobsSafePrefix(s string) string {
	for i := 0; i < len(s); i++ {
		if !collectJobsSafe(s[i]) {
			return s[:i]
		}
	}

	return s
}

// collectJobsStringRange returns arms selecting every document whose _id is
// a string s with lower <= s (if lower is set) and s <= upper (if upper is
// set); strict bounds select a subset of that, so they are handled alike.
//
// With a' the safe prefix of lower and b' that of upper, the main arm is
// J in [L, U), L = `"`+a', U = `"`+b' with its last byte incremented (`#`,
// past every quoted string, without an upper bound). A string s that is
// >= lower either starts with a', so J >= L, or first differs from a' at
// some i with s[i] > a'[i]: J then has at i+1 either s[i] (> a'[i], so J > L)
// or, if s[i] is escaped, a backslash; only when a'[i] > '\' can that put J
// below L, and a "lower probe" [`"`+a'[:i]+`\`, `"`+a'[:i]+`]`) catches it.
// A string s <= upper either starts with b' (so J < U), or is a proper
// prefix b'[:i] of b' (J = `"`+b'[:i]+`"`, below U unless U's byte at i+1 is
// <= '"': an "end probe" catches it), or first differs from b' at some i
// with s[i] < b'[i] (ASCII, then): J has at i+1 either s[i] (< U's byte) or,
// escaped, a backslash, caught by an "upper probe" when U's byte at i+1 is
// <= '\'. Probes lie outside [L, U) and, for lower <= upper, do not
// overlap each other, so no document is returned twice.
func collectJobsStringRange(lower, upper *string) []collectJobsArm {
	l := `"`
	u := `#`

	var probes []collectJobsArm

	escapeProbe := func(prefix string) collectJobsArm {
		return collectJobsArm{
			where: collectJobsIDExpr + ` >= ? AND ` + collectJobsIDExpr + ` < ?`,
			args:  []any{`"` + prefix + `\`, `"` + prefix + `]`},
		}
	}

	if lower != nil {
		a := collectJobsSafePrefix(*lower)
		l += a

		for i := 0; i < len(a); i++ {
			if a[i] > '\\' {
				probes = append(probes, escapeProbe(a[:i]))
			}
		}
	}

	if upper != nil {
		b := collectJobsSafePrefix(*upper)
		if n := len(b); n > 0 {
			u = `"` + b[:n-1] + string([]byte{b[n-1] + 1})

			for i := 0; i < n; i++ {
				next := u[i+1]

				if next <= '"' {
					probes = append(probes, collectJobsArm{
						where: collectJobsIDExpr + ` = ?`,
						args:  []any{`"` + b[:i] + `"`},
					})
				}

				if next <= '\\' {
					probes = append(probes, escapeProbe(b[:i]))
				}
			}
		}
	}

	// Probes are disjoint from the main arm and from each other when lower <= upper
	// (the caller checks): a lower and an upper probe on the same prefix
	// a'[:i] = b'[:i] would need a'[i] > '\' >= U's byte at i+1 > b'[i].
	main := collectJobsArm{
		where: collectJobsIDExpr + ` >= ? AND ` + collectJobsIDExpr + ` < ?`,
		args:  []any{l, u},
	}

	return append([]collectJobsArm{main}, probes...)
}

// Added by collect-jobs' scripts/build-ferretdb (not part of FerretDB).
//
// Checks id_pushdown.go against the real SQLite backend: for random _id
// filters over a collection whose _ids are strings full of characters the
// JSON encoder escapes, ints, doubles and ObjectIDs, the pushed-down query
// returns every document that matches (never fewer), returns none twice,
// and SQLite answers it from the _id index (no table scan), before and
// after ANALYZE. Run in the patched source tree:
//
//	go test ./internal/backends/sqlite -run CollectJobs

package sqlite

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/FerretDB/FerretDB/internal/backends"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/iterator"
	"github.com/FerretDB/FerretDB/internal/util/must"
	"github.com/FerretDB/FerretDB/internal/util/state"
	"github.com/FerretDB/FerretDB/internal/util/testutil"
)

// collectJobsAlphabet holds the characters that decide how a quoted string
// orders against its raw form: escaped ones (quote, backslash, controls,
// HTML characters, U+2028), those around the quote and the backslash, and
// multi-byte ones.
var collectJobsAlphabet = []string{
	"\"", "\\", "\n", "\x00", "\x1f", "<", ">", "&", " ", "!", "#", "[", "]", "^",
	"a", "b", "z", "~", "\x7f", "/", ":", "0", "1", "9", "é", "\u2028", "\u2029", "😀",
}

func collectJobsRandomString(r *rand.Rand) string {
	var sb strings.Builder

	for n := r.Intn(5); n > 0; n-- {
		sb.WriteString(collectJobsAlphabet[r.Intn(len(collectJobsAlphabet))])
	}

	return sb.String()
}

// collectJobsMatches is MongoDB's answer for one _id and the filter's _id condition.
func collectJobsMatches(id any, cond any) bool {
	num := func(v any) (float64, bool) {
		switch v := v.(type) {
		case int32:
			return float64(v), true
		case int64:
			return float64(v), true
		case float64:
			return v, true
		}

		return 0, false
	}

	equal := func(a, b any) bool {
		if x, ok := num(a); ok {
			y, ok := num(b)
			return ok && x == y
		}

		return a == b
	}

	doc, ok := cond.(*types.Document)
	if !ok {
		return equal(id, cond)
	}

	for _, k := range doc.Keys() {
		v := must.NotFail(doc.Get(k))

		switch k {
		case "$eq":
			if !equal(id, v) {
				return false
			}
		case "$in":
			arr := v.(*types.Array)
			found := false

			for i := 0; i < arr.Len(); i++ {
				if equal(id, must.NotFail(arr.Get(i))) {
					found = true
				}
			}

			if !found {
				return false
			}
		case "$gt", "$gte", "$lt", "$lte":
			s, ok := id.(string)
			b := v.(string)

			if !ok {
				return false
			}

			switch {
			case k == "$gt" && !(s > b), k == "$gte" && !(s >= b), k == "$lt" && !(s < b), k == "$lte" && !(s <= b):
				return false
			}
		default:
			panic(k)
		}
	}

	return true
}

func TestCollectJobsIDPushdown(t *testing.T) {
	t.Parallel()

	ctx := testutil.Ctx(t)

	sp, err := state.NewProvider("")
	require.NoError(t, err)

	b, err := NewBackend(&NewBackendParams{URI: testutil.TestSQLiteURI(t, ""), L: testutil.Logger(t), P: sp, BatchSize: 100})
	require.NoError(t, err)
	t.Cleanup(b.Close)

	db, err := b.Database(testutil.DatabaseName(t))
	require.NoError(t, err)

	c, err := db.Collection(testutil.CollectionName(t))
	require.NoError(t, err)

	r := rand.New(rand.NewSource(1))

	seen := map[any]bool{}
	var ids []any

	add := func(id any) {
		key := id
		if f, ok := id.(float64); ok {
			key = fmt.Sprint("f", f)
		}

		if !seen[key] {
			seen[key] = true
			ids = append(ids, id)
		}
	}

	for i := 0; i < 3000; i++ {
		add(collectJobsRandomString(r))
	}

	add("")

	for i := int32(-3); i <= 3; i++ {
		add(i)
	}

	add(int64(1) << 40)
	add(float64(7))
	add(2.5)
	add(types.ObjectID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	// (a string equal to the ObjectID's hex cannot join it: FerretDB's unique
	// _id index holds both as the same JSON text)

	docs := make([]*types.Document, len(ids))
	for i, id := range ids {
		docs[i] = must.NotFail(types.NewDocument("_id", id, "i", int32(i)))
	}

	_, err = c.InsertAll(ctx, &backends.InsertAllParams{Docs: docs})
	require.NoError(t, err)

	randomValue := func() any {
		switch r.Intn(8) {
		case 0:
			return int32(r.Intn(7) - 3)
		case 1:
			return int64(r.Intn(7) - 3)
		case 2:
			return float64(r.Intn(9) - 1)
		case 3:
			return types.ObjectID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
		case 4:
			return ids[r.Intn(len(ids))]
		default:
			return collectJobsRandomString(r)
		}
	}

	randomCond := func() any {
		switch r.Intn(5) {
		case 0:
			return randomValue()
		case 1:
			return must.NotFail(types.NewDocument("$eq", randomValue()))
		case 2:
			arr := types.MakeArray(3)
			for n := r.Intn(4); n > 0; n-- {
				arr.Append(randomValue())
			}

			return must.NotFail(types.NewDocument("$in", arr))
		default:
			doc := types.MakeDocument(2)
			if r.Intn(3) > 0 {
				doc.Set([]string{"$gt", "$gte"}[r.Intn(2)], collectJobsRandomString(r))
			}

			if r.Intn(3) > 0 || doc.Len() == 0 {
				doc.Set([]string{"$lt", "$lte"}[r.Intn(2)], collectJobsRandomString(r))
			}

			return doc
		}
	}

	check := func(t *testing.T, analyzed bool) {
		for n := 0; n < 1000; n++ {
			cond := randomCond()
			filter := must.NotFail(types.NewDocument("_id", cond))

			res, err := c.Query(ctx, &backends.QueryParams{Filter: filter})
			require.NoError(t, err)

			got, err := iterator.ConsumeValues(res.Iter)
			require.NoError(t, err)

			returned := map[int32]int{}
			for _, doc := range got {
				returned[must.NotFail(doc.Get("i")).(int32)]++
			}

			for i, id := range ids {
				if collectJobsMatches(id, cond) {
					require.Equal(t, 1, returned[int32(i)], "_id %#v, filter %s", id, types.FormatAnyValue(filter))
				}

				require.LessOrEqual(t, returned[int32(i)], 1, "_id %#v returned twice, filter %s", id, types.FormatAnyValue(filter))
			}

			explain, err := c.Explain(ctx, &backends.ExplainParams{Filter: filter})
			require.NoError(t, err)
			require.True(t, explain.FilterPushdown, "filter %s", types.FormatAnyValue(filter))

			arms := collectJobsIDArms(filter)
			if arms[0].where == "0" {
				// nothing can match: the plan says SCAN, but SQLite tests
				// the constant WHERE 0 once, before it reads a row
				continue
			}

			if analyzed && strings.Contains(arms[0].where, ">=") {
				// After ANALYZE, SQLite (built with STAT4) knows how many
				// rows a range holds and rightly scans the table when the
				// range holds most of it.
				continue
			}

			plan := must.NotFail(explain.QueryPlanner.Get("Plan")).(*types.Array)
			for i := 0; i < plan.Len(); i++ {
				line := must.NotFail(plan.Get(i)).(string)
				require.NotContains(t, line, "SCAN", "filter %s", types.FormatAnyValue(filter))
			}
		}
	}

	t.Run("Fresh", func(t *testing.T) { check(t, false) })

	// ANALYZE, as collStats does, changes the planner's estimates.
	_, err = c.Stats(ctx, &backends.CollectionStatsParams{Refresh: true})
	require.NoError(t, err)

	t.Run("Analyzed", func(t *testing.T) { check(t, true) })
}

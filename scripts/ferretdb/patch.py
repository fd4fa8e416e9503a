"""Applies collect-jobs' patch to a FerretDB 1.24 source tree. Fails loudly if
the source does not look as expected, rather than building an unpatched binary.

1. Atomic writes: every update, findAndModify and delete command holds a
   per-collection lock while it reads and writes (see atomic_writes.go).
2. _id pushdown on SQLite: filters on _id (equality, $in, string ranges) use
   the _id index instead of scanning the table, and so do the writes by _id
   (see id_pushdown.go; id_pushdown_test.go checks it against SQLite:
   `go test ./internal/backends/sqlite -run CollectJobs` in the source tree).
"""

import pathlib
import re
import shutil
import sys

src = pathlib.Path(sys.argv[1])
here = pathlib.Path(__file__).parent


def replace_once(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    count = text.count(old)
    if count != 1:
        sys.exit(f"patch.py: {path.relative_to(src)}: expected the text below once, found it {count} times:\n{old}")
    path.write_text(text.replace(old, new))


# 1. Atomic writes.
handler = src / "internal" / "handler"
shutil.copy(here / "atomic_writes.go", handler / "collectjobs_atomic_writes.go")
for name, getter in (
    ("msg_update.go", "GetUpdateParams"),
    ("msg_findandmodify.go", "GetFindAndModifyParams"),
    ("msg_delete.go", "GetDeleteParams"),
):
    path = handler / name
    text = path.read_text()
    pattern = re.compile(r"(\tparams, err := common\." + getter + r"\(document, h\.L\)\n\tif err != nil \{\n[^\n]*\n\t\}\n)")
    new, count = pattern.subn(r"\1\n\tdefer collectJobsLockNamespace(params.DB, params.Collection)()\n", text)
    if count != 1:
        sys.exit(f"patch.py: {name}: expected one {getter} call, found {count}")
    path.write_text(new)

# 2. _id pushdown on SQLite.
sqlite = src / "internal" / "backends" / "sqlite"
shutil.copy(here / "id_pushdown.go", sqlite / "collectjobs_id_pushdown.go")
shutil.copy(here / "id_pushdown_test.go", sqlite / "collectjobs_id_pushdown_test.go")

# The expression the _id index is on (metadata.indexesCreate writes
# _ferretdb_sjson->"_id"); UpdateAll and DeleteAll filter on IDColumn.
replace_once(
    sqlite / "metadata" / "metadata.go",
    """\tIDColumn = DefaultColumn + "->'$._id'"\n""",
    """\tIDColumn = DefaultColumn + `->"_id"` // collect-jobs: the _id index's expression\n""",
)

old_pushdown = """
	// that logic should exist in one place
	// TODO https://github.com/FerretDB/FerretDB/issues/3235
	if params.Filter.Len() == 1 {
		v, _ := params.Filter.Get("_id")
		switch v.(type) {
		case string, types.ObjectID:
%s			whereClause = fmt.Sprintf(` WHERE %%s = ?`, metadata.IDColumn)
			args = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
		}
	}
"""
collection = sqlite / "collection.go"
replace_once(
    collection,
    """
	var whereClause string
	var args []any
"""
    + old_pushdown % ""
    + """
	q += whereClause
	q += prepareOrderByClause(params.Sort)
""",
    """
	// collect-jobs: _id filters use the _id index (collectjobs_id_pushdown.go).
	orderBy := prepareOrderByClause(params.Sort)
	q, args := collectJobsIDQuery(q, params.Filter, orderBy != "")
	q += orderBy
""",
)
replace_once(
    collection,
    """
	var filterPushdown bool
	var whereClause string
	var args []any
"""
    + old_pushdown % "\t\t\tfilterPushdown = true\n"
    + """
	orderByClause := prepareOrderByClause(params.Sort)
	sortPushdown := orderByClause != ""

	q := `EXPLAIN QUERY PLAN ` + selectClause + whereClause + orderByClause
""",
    """
	orderByClause := prepareOrderByClause(params.Sort)
	sortPushdown := orderByClause != ""

	// collect-jobs: the query Query runs (collectjobs_id_pushdown.go).
	pushed, args := collectJobsIDQuery(selectClause, params.Filter, sortPushdown)
	filterPushdown := pushed != selectClause

	q := `EXPLAIN QUERY PLAN ` + pushed + orderByClause
""",
)
print("patched", src)

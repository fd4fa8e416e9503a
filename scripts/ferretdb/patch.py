"""Applies collect-jobs' patch to a FerretDB 1.24 source tree: every update,
findAndModify and delete command holds a per-collection lock while it reads
and writes (see atomic_writes.go). Fails loudly if the source does not look
as expected, rather than building an unpatched binary."""
import pathlib
import re
import shutil
import sys

src = pathlib.Path(sys.argv[1])
handler = src / "internal" / "handler"
shutil.copy(pathlib.Path(__file__).with_name("atomic_writes.go"), handler / "collectjobs_atomic_writes.go")
for name, getter in (("msg_update.go", "GetUpdateParams"), ("msg_findandmodify.go", "GetFindAndModifyParams"), ("msg_delete.go", "GetDeleteParams")):
    path = handler / name
    text = path.read_text()
    pattern = re.compile(r"(\tparams, err := common\." + getter + r"\(document, h\.L\)\n\tif err != nil \{\n[^\n]*\n\t\}\n)")
    new, count = pattern.subn(r"\1\n\tdefer collectJobsLockNamespace(params.DB, params.Collection)()\n", text)
    if count != 1:
        sys.exit(f"patch.py: {name}: expected one {getter} call, found {count}")
    path.write_text(new)
print("patched", src)

// Added by collect-jobs' scripts/build-ferretdb (not part of FerretDB).
//
// FerretDB 1.24 on SQLite runs update, findAndModify and delete as a read
// followed by a separate write (FerretDB issue #3040), so two concurrent
// guarded updates of one document can both win and one of two concurrent
// updates can be lost. MongoDB makes every single-document write atomic, and
// collect-jobs relies on that. Serialising the write commands of each
// collection restores that guarantee for the development database.

package handler

import "sync"

var collectJobsNamespaceLocks sync.Map

// collectJobsLockNamespace locks one collection's write commands; it returns the unlock.
func collectJobsLockNamespace(db, collection string) func() {
	m, _ := collectJobsNamespaceLocks.LoadOrStore(db+"."+collection, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()

	return mu.Unlock
}

/*
 * A SQLite VFS that hands each WAL commit to the kernel in one write.
 *
 * Why: SQLite appends a commit to the write-ahead log as two write() calls per page, a
 * 24-byte frame header and then the page. On the bench VM each of those writes into the
 * page cache costs a few microseconds of kernel CPU, most of it the first write to a page
 * that the previous commit's fdatasync had cleaned: a durable one-step run commits about
 * 14 frames, and its 28 writes cost ~120 us, where the same bytes in one write cost ~15 us
 * (bench/README.md, "What a durable one-step run costs").
 *
 * What: the VFS "mainspring-wal" wraps the default VFS ("unix"). A database file and its
 * other files pass straight through. A WAL file's writes are gathered while each one
 * continues the last, and the gathered bytes are written:
 *   - as soon as the page of a commit frame (a frame header whose "database size" field is
 *     not zero) has been added: a commit's frames are in the file when SQLite goes on to
 *     sync them and to publish them in the WAL index, exactly as without this VFS;
 *   - before any other operation on the file (read, sync, size, truncate, file control,
 *     close), before a write elsewhere in the file, and when 64 KiB are gathered.
 * So nothing is read, synced or announced to another connection before it is written, and
 * a write error is reported by the write call that completes the commit, which SQLite
 * then rolls back as it would any failed write.
 *
 * That rule relies on SQLite writing each frame as a header write then a page write. It
 * does so on a file with "powersafe overwrite" (the unix VFS's default); without it, SQLite
 * pads a commit to a sector boundary and may split a frame's writes around a sync, so such
 * a file is not buffered at all. As a safety net, the database file's shared-memory
 * barrier (called between the two copies of a new WAL index header, i.e. before readers
 * can see new frames) writes anything still gathered and stops gathering for that WAL
 * file: a write pattern the rule did not foresee costs speed, not correctness.
 *
 * The module is built by setup.py as an optional extension. It registers the VFS in the
 * SQLite library it is linked with; mainspring.engine.store.wal_writes checks that this is
 * the library Python's sqlite3 module uses before any connection names the VFS.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <string.h>

#define VFS_NAME "mainspring-wal"
#define WAL_FRAME_HEADER_SIZE 24
/* The unix VFS writes at most 128 KiB - 1 per pwrite() and takes a write of which a piece
 * of exactly 128 KiB is left for a full disk: gathered writes stay well under that. */
#define GATHER_CAPACITY (64 * 1024)

typedef struct ShimFile ShimFile;

struct ShimFile {
    sqlite3_file base;     /* must come first: SQLite sees this */
    sqlite3_file *real;    /* the wrapped file, in the memory right after this struct */
    ShimFile *wal;         /* on a database file: its connection's WAL file, if open */
    ShimFile *database;    /* on a WAL file: its database file */
    unsigned char *gathered;
    sqlite3_int64 gathered_at; /* file offset of gathered[0] */
    int gathered_len;
    int gathering;         /* 0: this WAL file's writes pass straight through */
    int commit_header_seen; /* the last write was the header of a commit frame */
};

static sqlite3_vfs shim_vfs;
static sqlite3_vfs *real_vfs;
/* Times the safety net below found gathered bytes: the tests hold it at zero. */
static long unforeseen_flushes;
static const sqlite3_io_methods database_methods;
static const sqlite3_io_methods wal_methods;

#define REAL(f) (((ShimFile *)(f))->real)

static int write_gathered(ShimFile *p) {
    int len = p->gathered_len;
    if (len == 0) return SQLITE_OK;
    p->gathered_len = 0;
    return p->real->pMethods->xWrite(p->real, p->gathered, len, p->gathered_at);
}

/* -- the WAL file ---------------------------------------------------------------------- */

static int wal_write(sqlite3_file *f, const void *data, int len, sqlite3_int64 offset) {
    ShimFile *p = (ShimFile *)f;
    int rc;
    if (!p->gathering) return p->real->pMethods->xWrite(p->real, data, len, offset);
    if (p->gathered_len > 0 &&
        (offset != p->gathered_at + p->gathered_len || p->gathered_len + len > GATHER_CAPACITY)) {
        rc = write_gathered(p);
        if (rc != SQLITE_OK) return rc;
    }
    if (len > GATHER_CAPACITY) {
        p->commit_header_seen = 0;
        return p->real->pMethods->xWrite(p->real, data, len, offset);
    }
    if (p->gathered == NULL) {
        p->gathered = sqlite3_malloc(GATHER_CAPACITY);
        if (p->gathered == NULL) return SQLITE_IOERR_NOMEM;
    }
    if (p->gathered_len == 0) p->gathered_at = offset;
    memcpy(p->gathered + p->gathered_len, data, (size_t)len);
    p->gathered_len += len;
    if (len == WAL_FRAME_HEADER_SIZE) {
        /* Bytes 4-7 of a frame header: the database size in pages after a commit, else 0. */
        const unsigned char *header = data;
        p->commit_header_seen = (header[4] | header[5] | header[6] | header[7]) != 0;
        return SQLITE_OK;
    }
    if (p->commit_header_seen) {
        p->commit_header_seen = 0;
        return write_gathered(p);
    }
    return SQLITE_OK;
}

static int wal_close(sqlite3_file *f) {
    ShimFile *p = (ShimFile *)f;
    int rc = write_gathered(p);
    int closed = p->real->pMethods->xClose(p->real);
    if (p->database != NULL && p->database->wal == p) p->database->wal = NULL;
    p->database = NULL;
    sqlite3_free(p->gathered);
    p->gathered = NULL;
    return rc != SQLITE_OK ? rc : closed;
}

static int wal_read(sqlite3_file *f, void *out, int len, sqlite3_int64 offset) {
    int rc = write_gathered((ShimFile *)f);
    if (rc != SQLITE_OK) return rc;
    return REAL(f)->pMethods->xRead(REAL(f), out, len, offset);
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size) {
    int rc = write_gathered((ShimFile *)f);
    if (rc != SQLITE_OK) return rc;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int wal_sync(sqlite3_file *f, int flags) {
    int rc = write_gathered((ShimFile *)f);
    if (rc != SQLITE_OK) return rc;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size) {
    int rc = write_gathered((ShimFile *)f);
    if (rc != SQLITE_OK) return rc;
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg) {
    int rc = write_gathered((ShimFile *)f);
    if (rc != SQLITE_OK) return rc;
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

/* -- pass-through methods (the database file, and what the WAL file does not change) ----- */

static int pass_close(sqlite3_file *f) {
    ShimFile *p = (ShimFile *)f;
    if (p->wal != NULL) p->wal->database = NULL;
    p->wal = NULL;
    return p->real->pMethods->xClose(p->real);
}
static int pass_read(sqlite3_file *f, void *out, int len, sqlite3_int64 offset) {
    return REAL(f)->pMethods->xRead(REAL(f), out, len, offset);
}
static int pass_write(sqlite3_file *f, const void *data, int len, sqlite3_int64 offset) {
    return REAL(f)->pMethods->xWrite(REAL(f), data, len, offset);
}
static int pass_truncate(sqlite3_file *f, sqlite3_int64 size) {
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int pass_sync(sqlite3_file *f, int flags) {
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int pass_file_size(sqlite3_file *f, sqlite3_int64 *size) {
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int pass_lock(sqlite3_file *f, int level) {
    return REAL(f)->pMethods->xLock(REAL(f), level);
}
static int pass_unlock(sqlite3_file *f, int level) {
    return REAL(f)->pMethods->xUnlock(REAL(f), level);
}
static int pass_check_reserved_lock(sqlite3_file *f, int *out) {
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int pass_file_control(sqlite3_file *f, int op, void *arg) {
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int pass_sector_size(sqlite3_file *f) {
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int pass_device_characteristics(sqlite3_file *f) {
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int pass_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out) {
    return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}
static int pass_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
static void database_shm_barrier(sqlite3_file *f) {
    ShimFile *p = (ShimFile *)f;
    ShimFile *wal = p->wal;
    if (wal != NULL && wal->gathered_len > 0) {
        /* Frames are about to be announced and are not all written: the rule above did not
         * see their commit. Write them (a failure here cannot be returned; the next read
         * of the WAL reports it) and stop gathering for this file. */
        wal->gathering = 0;
        unforeseen_flushes++;
        (void)write_gathered(wal);
    }
    p->real->pMethods->xShmBarrier(p->real);
}
static int pass_shm_unmap(sqlite3_file *f, int delete_flag) {
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}
static int pass_fetch(sqlite3_file *f, sqlite3_int64 offset, int len, void **out) {
    return REAL(f)->pMethods->xFetch(REAL(f), offset, len, out);
}
static int pass_unfetch(sqlite3_file *f, sqlite3_int64 offset, void *page) {
    return REAL(f)->pMethods->xUnfetch(REAL(f), offset, page);
}

static const sqlite3_io_methods database_methods = {
    3, pass_close, pass_read, pass_write, pass_truncate, pass_sync, pass_file_size,
    pass_lock, pass_unlock, pass_check_reserved_lock, pass_file_control, pass_sector_size,
    pass_device_characteristics, pass_shm_map, pass_shm_lock, database_shm_barrier,
    pass_shm_unmap, pass_fetch, pass_unfetch};

static const sqlite3_io_methods wal_methods = {
    3, wal_close, wal_read, wal_write, wal_truncate, wal_sync, wal_file_size,
    pass_lock, pass_unlock, pass_check_reserved_lock, wal_file_control, pass_sector_size,
    pass_device_characteristics, pass_shm_map, pass_shm_lock, database_shm_barrier,
    pass_shm_unmap, pass_fetch, pass_unfetch};

/* -- the VFS ------------------------------------------------------------------------- */

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                     int *out_flags) {
    ShimFile *p = (ShimFile *)f;
    (void)vfs;
    memset(p, 0, sizeof(*p));
    p->real = (sqlite3_file *)&p[1];
    int rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out_flags);
    if (rc != SQLITE_OK || p->real->pMethods == NULL) {
        /* SQLite calls xClose only on a file whose pMethods is set. */
        if (p->real->pMethods != NULL) p->real->pMethods->xClose(p->real);
        p->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    if (p->real->pMethods->iVersion < 3) {
        /* Our method tables are version 3; a wrapped VFS without shared memory or memory
         * mapping is not one this shim was written for. */
        p->real->pMethods->xClose(p->real);
        p->base.pMethods = NULL;
        return SQLITE_CANTOPEN;
    }
    if (flags & SQLITE_OPEN_WAL) {
        sqlite3_file *database = sqlite3_database_file_object(name);
        if (database != NULL && database->pMethods == &database_methods) {
            p->database = (ShimFile *)database;
            p->database->wal = p;
            /* SQLite pads commits to a sector (and splits frames around a sync) unless the
             * *database* file reports powersafe overwrite: that is the one to ask. */
            int device = database->pMethods->xDeviceCharacteristics(database);
            p->gathering = (device & SQLITE_IOCAP_POWERSAFE_OVERWRITE) != 0;
        }
        p->base.pMethods = &wal_methods;
    } else {
        p->base.pMethods = &database_methods;
    }
    return SQLITE_OK;
}

static int shim_delete(sqlite3_vfs *v, const char *name, int sync_dir) {
    (void)v;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}
static int shim_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int shim_full_pathname(sqlite3_vfs *v, const char *name, int size, char *out) {
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, size, out);
}
static void *shim_dl_open(sqlite3_vfs *v, const char *name) {
    (void)v;
    return real_vfs->xDlOpen(real_vfs, name);
}
static void shim_dl_error(sqlite3_vfs *v, int size, char *out) {
    (void)v;
    real_vfs->xDlError(real_vfs, size, out);
}
static void (*shim_dl_sym(sqlite3_vfs *v, void *handle, const char *symbol))(void) {
    (void)v;
    return real_vfs->xDlSym(real_vfs, handle, symbol);
}
static void shim_dl_close(sqlite3_vfs *v, void *handle) {
    (void)v;
    real_vfs->xDlClose(real_vfs, handle);
}
static int shim_randomness(sqlite3_vfs *v, int size, char *out) {
    (void)v;
    return real_vfs->xRandomness(real_vfs, size, out);
}
static int shim_sleep(sqlite3_vfs *v, int microseconds) {
    (void)v;
    return real_vfs->xSleep(real_vfs, microseconds);
}
static int shim_current_time(sqlite3_vfs *v, double *out) {
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}
static int shim_get_last_error(sqlite3_vfs *v, int size, char *out) {
    (void)v;
    return real_vfs->xGetLastError != NULL ? real_vfs->xGetLastError(real_vfs, size, out) : 0;
}
static int shim_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

/* -- the Python module ------------------------------------------------------------------ */

static PyObject *register_vfs(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    if (real_vfs == NULL) {
        sqlite3_vfs *found = sqlite3_vfs_find(NULL);
        if (found == NULL || found->iVersion < 2) {
            PyErr_SetString(PyExc_RuntimeError, "SQLite's default VFS is missing or too old");
            return NULL;
        }
        real_vfs = found;
        shim_vfs.iVersion = 2;
        shim_vfs.szOsFile = (int)sizeof(ShimFile) + real_vfs->szOsFile;
        shim_vfs.mxPathname = real_vfs->mxPathname;
        shim_vfs.zName = VFS_NAME;
        shim_vfs.xOpen = shim_open;
        shim_vfs.xDelete = shim_delete;
        shim_vfs.xAccess = shim_access;
        shim_vfs.xFullPathname = shim_full_pathname;
        shim_vfs.xDlOpen = shim_dl_open;
        shim_vfs.xDlError = shim_dl_error;
        shim_vfs.xDlSym = shim_dl_sym;
        shim_vfs.xDlClose = shim_dl_close;
        shim_vfs.xRandomness = shim_randomness;
        shim_vfs.xSleep = shim_sleep;
        shim_vfs.xCurrentTime = shim_current_time;
        shim_vfs.xGetLastError = shim_get_last_error;
        shim_vfs.xCurrentTimeInt64 = shim_current_time_int64;
        int rc = sqlite3_vfs_register(&shim_vfs, 0);
        if (rc != SQLITE_OK) {
            real_vfs = NULL;
            PyErr_Format(PyExc_RuntimeError, "sqlite3_vfs_register failed: %s",
                         sqlite3_errstr(rc));
            return NULL;
        }
    }
    return PyUnicode_FromString(VFS_NAME);
}

static PyObject *count_unforeseen_flushes(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromLong(unforeseen_flushes);
}

static PyMethodDef module_methods[] = {
    {"register", register_vfs, METH_NOARGS,
     "Register the VFS (once) in the SQLite library this module is linked with; return its "
     "name."},
    {"unforeseen_flushes", count_unforeseen_flushes, METH_NOARGS,
     "How many times WAL bytes were still gathered when SQLite announced new frames (the "
     "safety net wrote them and stopped gathering for that file); 0 unless SQLite's write "
     "pattern changed."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mainspring.engine.store._walwrites",
    "A SQLite VFS that writes each WAL commit in one write (see the C source).", -1,
    module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__walwrites(void) { return PyModule_Create(&module_def); }

// Process-wide SQLite settings that only sqlite3_config (variadic, which Swift cannot call)
// sets. Declared here rather than by including sqlite3.h, whose declarations GRDB's module
// already owns.
#ifndef FLOWMAP_SQLITE_SETUP_H
#define FLOWMAP_SQLITE_SETUP_H

int sqlite3_config(int, ...);
int sqlite3_initialize(void);
int sqlite3_shutdown(void);

/// Multi-thread mode (no mutex around each call on a connection: GRDB serializes each
/// connection's use itself) and no memory statistics (a global mutex around every allocation).
/// Must run before any connection is opened; returns 0 (SQLITE_OK) when both were taken.
static inline int fm_sqlite_setup(void) {
    if (sqlite3_shutdown() != 0) return 1;
    int rc = sqlite3_config(2 /* SQLITE_CONFIG_MULTITHREAD */);
    if (rc == 0) rc = sqlite3_config(9 /* SQLITE_CONFIG_MEMSTATUS */, 0);
    int init = sqlite3_initialize();
    return rc != 0 ? rc : init;
}

#endif

//! Keeping the process's memory what it uses, for months (glibc's malloc).
//!
//! Measured (bench/broker_memory.sh, docs/design/broker.md "Memory"): the
//! live heap of a collector at 51 streams is a few MiB, yet its RSS grew
//! to three times that and kept growing, because of how glibc's allocator
//! behaves under this program, not because of anything the program held:
//!
//! - one large allocation freed early (argon2's 19 MiB working memory, at
//!   start for the dummy hash and at every login) raises glibc's *dynamic*
//!   mmap threshold to its size, and the trim threshold to twice that: from
//!   then on every allocation below 19 MiB comes from the heap, and freed
//!   heap memory is only given back once 38 MiB of it lie free at the top;
//! - every thread that allocates may get its own arena (up to 8 per core),
//!   each fragmenting on its own: the tokio workers, the blocking pool
//!   (storage reads), the SQLite writer, the broker's connections.
//!
//! [`tune`] fixes the thresholds (which turns the dynamic adjustment off)
//! and caps the arenas; [`trim`], run once a minute, hands free pages of
//! every arena back to the kernel. Both are no-ops off glibc.

/// Allocations from this size up get their own mapping, returned on free.
pub const MMAP_THRESHOLD: usize = 256 * 1024;
/// Free memory at the top of the heap beyond this is returned at once.
pub const TRIM_THRESHOLD: usize = 1024 * 1024;
/// Arenas: enough for the few threads that allocate at the same time.
pub const ARENA_MAX: usize = 2;
/// How often [`trim`] runs.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Sets glibc's allocator up for a long-running process. Call first thing
/// in `main`, before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other
    // threads exist, with constant, valid values.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX as libc::c_int);
    }
}

/// What the allocator holds, from glibc's `mallinfo2` (all arenas).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heap {
    /// Bytes in allocations the program holds (heap chunks and mmapped).
    pub in_use: u64,
    /// Bytes free inside the heap that the allocator keeps (not yet given
    /// back): what fragmentation costs.
    pub free_held: u64,
}

/// The allocator's figures now; `None` off glibc. It takes every arena's
/// lock in turn, as `malloc_trim` does: fine once per scrape.
pub fn heap() -> Option<Heap> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        Some(Heap {
            in_use: (m.uordblks + m.hblkhd) as u64,
            free_held: m.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns free pages of every arena to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn heap_counts_what_is_held() {
        // The figures are the whole process's, and the other unit tests run
        // on threads beside this one, allocating and freeing as they go (CI
        // saw 4 KiB less than a 4 MiB block once). So the block is large
        // and the bound half of it: what other tests free between the two
        // readings is far below 32 MiB. Zeroed, it is mapped but not touched.
        const BLOCK: usize = 64 << 20;
        let before = heap().unwrap_or_default();
        let block = std::hint::black_box(vec![0u8; BLOCK]);
        let during = heap().unwrap_or_default();
        assert!(
            during.in_use >= before.in_use + (BLOCK / 2) as u64,
            "{before:?} -> {during:?}"
        );
        drop(block);
    }
}

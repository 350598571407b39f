//! A global allocator that keeps one malformed Kafka request from aborting the whole server.
//!
//! Why: the `kafka-protocol` codec sizes each decoded array with `Vec::with_capacity(n)`, `n`
//! being the length prefix the peer sent, before checking that `n` elements can fit in the
//! bytes that remain. A 14-byte request announcing 800 million elements asks for tens of
//! gigabytes; the system allocator refuses (the kernel's overcommit heuristic rejects a
//! single mapping larger than RAM plus swap), and Rust aborts the process on a failed
//! allocation. Found by the `kafka_request` fuzz target (`fuzz/`).
//!
//! The guard serves every allocation of 1 GiB or more with an anonymous `mmap` marked
//! `MAP_NORESERVE`, which the kernel grants without committing memory: only pages actually
//! touched are ever backed. The decoder touches a handful of elements before it runs out of
//! bytes, fails with an error, and the mapping is unmapped; the connection is closed as for any
//! malformed request. Smaller allocations go to the system allocator unchanged. Legitimate
//! allocations that large do not occur in evident (requests are at most 16 MiB, decompressed
//! batches at most 64 MiB), and if one did it would behave as a lazily committed mapping, which
//! is what glibc's malloc gives large allocations anyway. Under the kernel's strict overcommit
//! mode (`vm.overcommit_memory = 2`) `MAP_NORESERVE` is ignored and the refusal, hence the
//! abort, comes back: run evident with the default heuristic mode.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped lazily.
const HUGE: usize = 1 << 30;
/// Alignment an anonymous mapping guarantees (a page).
const PAGE: usize = 4096;

/// The guarded allocator; install it in a binary with `#[global_allocator]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedAlloc;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY: every method either forwards to `System` with the same arguments, or, for huge
// layouts (decided by `is_huge`, a pure function of the layout, so `alloc` and `dealloc` of the
// same block always take the same path), returns a fresh page-aligned anonymous mapping of
// exactly `layout.size()` bytes, which is zeroed, readable and writable, and is released with
// `munmap` of the same length. Page alignment satisfies any `layout.align() <= PAGE`.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size()) // anonymous mappings are zero-filled
        } else {
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: `ptr` came from `map(layout.size())` (same layout, same path).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(layout) && !is_huge(new_layout) {
            // SAFETY: both layouts take the `System` path; the caller upholds the contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing or staying in the huge path: allocate, copy, free.
        // SAFETY: `new_layout` is valid (checked above) and non-zero (it is >= old or huge).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for the copied length and do not overlap (the
            // new one is fresh); `ptr` is then freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory;
    // the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_lazy_and_usable() {
        let a = GuardedAlloc;
        // 64 GiB: far beyond this machine's memory; granted lazily, a few pages touched.
        let layout = Layout::from_size_align(64 << 30, 8).expect("layout");
        // SAFETY: layout is non-zero; the block is written within bounds and freed with the
        // same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null(), "a lazy mapping is granted");
            *p = 7;
            *p.add((64 << 30) - 1) = 9;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
            let small = Layout::from_size_align(64, 8).expect("layout");
            let q = a.alloc(small);
            assert!(!q.is_null());
            let r = a.realloc(q, small, 2 << 30);
            assert!(!r.is_null(), "growing into the huge path copies");
            a.dealloc(r, Layout::from_size_align(2 << 30, 8).expect("layout"));
        }
    }
}

use clap::Parser;

#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

/// mimalloc, with its plain entry points for the usual alignments: the
/// `mimalloc` crate's allocator calls the aligned ones for every
/// allocation, which took about 100 instructions each where `mi_malloc`
/// takes about 20 (callgrind, ~17 allocations per proxied request).
struct Mimalloc;

/// mimalloc's blocks are 16-byte aligned (MI_MAX_ALIGN_SIZE), as std's
/// `System` allocator assumes of malloc on x86_64 and aarch64.
const MIN_ALIGN: usize = 16;

fn plain(layout: std::alloc::Layout) -> bool {
    layout.align() <= MIN_ALIGN && layout.align() <= layout.size()
}

// SAFETY: each entry point is mimalloc's, with its documented contract:
// blocks of at least the size asked for, aligned as `plain` checks or as
// asked of the aligned variants, freed by `mi_free`.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plain(layout) {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plain(layout) {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= new_size {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

fn main() {
    let cli = waypost::cli::Cli::parse();
    std::process::exit(waypost::control::main(cli));
}
